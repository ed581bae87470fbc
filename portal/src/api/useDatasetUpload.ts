// An upload belongs to the page that started it: leaving the page aborts it (a large file must
// not go on streaming to a form nobody sees), and a 401 ends the session as any request's does.
import { useCallback, useEffect, useRef } from 'react';
import { useSession } from '../session/SessionContext';
import { uploadDatasetVersion, type UploadedVersion, type UploadRequest } from './upload';

export type DatasetUpload = Omit<UploadRequest, 'csrfToken' | 'onUnauthorized'>;

/** Starts an upload with the session's CSRF token; the one still running is aborted when the
 * component unmounts or a new one starts. */
export function useDatasetUpload(): (request: DatasetUpload) => Promise<UploadedVersion> {
  const { session, expire } = useSession();
  const running = useRef<{ abort: () => void } | null>(null);
  useEffect(
    () => () => {
      running.current?.abort();
      running.current = null;
    },
    [],
  );
  const csrfToken = session?.csrfToken ?? '';
  return useCallback(
    async (request: DatasetUpload) => {
      running.current?.abort();
      const started = uploadDatasetVersion({ ...request, csrfToken, onUnauthorized: expire });
      running.current = started;
      try {
        return await started.done;
      } finally {
        if (running.current === started) running.current = null;
      }
    },
    [csrfToken, expire],
  );
}
