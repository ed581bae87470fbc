// Every route of the portal as a function, so that no link is built by hand: each part taken
// from data (a slug, a name, an id) is percent-encoded, and a name with "/", "?", "#" or "%"
// in it leads to its own page instead of another one. App.tsx declares the same routes.

const part = encodeURIComponent;

export const paths = {
  projects: () => '/projects',
  tokens: () => '/tokens',
  project: (slug: string) => `/projects/${part(slug)}`,
  datasets: (slug: string) => `/projects/${part(slug)}/datasets`,
  dataset: (slug: string, name: string) => `/projects/${part(slug)}/datasets/${part(name)}`,
  jobs: (slug: string) => `/projects/${part(slug)}/jobs`,
  submitJob: (slug: string) => `/projects/${part(slug)}/jobs/new`,
  job: (slug: string, id: string) => `/projects/${part(slug)}/jobs/${part(id)}`,
  compareJobs: (slug: string, ids: ReadonlyArray<string>) => {
    const query = ids.map((id) => `job=${part(id)}`).join('&');
    return `/projects/${part(slug)}/jobs/compare${query ? `?${query}` : ''}`;
  },
  models: (slug: string) => `/projects/${part(slug)}/models`,
  model: (slug: string, name: string) => `/projects/${part(slug)}/models/${part(name)}`,
  deployments: (slug: string) => `/projects/${part(slug)}/deployments`,
  deployment: (slug: string, name: string) => `/projects/${part(slug)}/deployments/${part(name)}`,
  audit: (slug: string) => `/projects/${part(slug)}/audit`,
} as const;
