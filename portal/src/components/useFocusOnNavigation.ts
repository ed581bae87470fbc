import { useEffect, useRef, type RefObject } from 'react';

/** The page's main heading, made focusable by script only (not a tab stop). */
function focusHeading(root: HTMLElement): boolean {
  const heading = root.querySelector('h1');
  if (!heading) return false;
  const active = document.activeElement;
  // The user is already at work in the new page (typing, say): focus is left where it is.
  if (active && active !== document.body && root.contains(active)) return true;
  if (!heading.hasAttribute('tabindex')) heading.setAttribute('tabindex', '-1');
  heading.focus();
  return true;
}

/** After a route change, focus goes to the new page's <h1>, as it would on a page load: a
 * screen reader says where the user is, and the keyboard starts from the page's top instead of
 * the link that is gone. A page whose heading comes with its data is waited for. The first
 * page is left alone: the browser's own start is right there. */
export function useFocusOnNavigation(main: RefObject<HTMLElement | null>, pathname: string): void {
  const shown = useRef(pathname);
  useEffect(() => {
    if (shown.current === pathname) return;
    shown.current = pathname;
    const root = main.current;
    if (!root || focusHeading(root)) return;
    const observer = new MutationObserver(() => {
      if (focusHeading(root)) observer.disconnect();
    });
    observer.observe(root, { childList: true, subtree: true });
    return () => observer.disconnect();
  }, [main, pathname]);
}
