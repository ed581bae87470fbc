import { describe, expect, it } from 'vitest';
import { paths } from './paths';

describe('paths', () => {
  it('builds every route of a project from its slug', () => {
    expect(paths.project('fraud')).toBe('/projects/fraud');
    expect(paths.datasets('fraud')).toBe('/projects/fraud/datasets');
    expect(paths.jobs('fraud')).toBe('/projects/fraud/jobs');
    expect(paths.submitJob('fraud')).toBe('/projects/fraud/jobs/new');
    expect(paths.models('fraud')).toBe('/projects/fraud/models');
    expect(paths.deployments('fraud')).toBe('/projects/fraud/deployments');
    expect(paths.audit('fraud')).toBe('/projects/fraud/audit');
  });

  it('encodes each part, so that a name with a slash, a question mark or a hash keeps its own page', () => {
    expect(paths.dataset('fr aud', 'a/b?c#d%')).toBe('/projects/fr%20aud/datasets/a%2Fb%3Fc%23d%25');
    expect(paths.model('fraud', 'x/../../tokens')).toBe('/projects/fraud/models/x%2F..%2F..%2Ftokens');
    expect(paths.deployment('fraud', 'api?v=2')).toBe('/projects/fraud/deployments/api%3Fv%3D2');
    expect(paths.job('fraud', 'Sm9iOjE=')).toBe('/projects/fraud/jobs/Sm9iOjE%3D');
    // Decoding gives the name back, as the router does for the page's parameters.
    expect(decodeURIComponent(paths.dataset('s', 'a/b?c#d%').split('/').pop() ?? '')).toBe('a/b?c#d%');
  });

  it('puts each compared job in its own query parameter', () => {
    expect(paths.compareJobs('fraud', ['a&b', 'c'])).toBe('/projects/fraud/jobs/compare?job=a%26b&job=c');
    expect(paths.compareJobs('fraud', [])).toBe('/projects/fraud/jobs/compare');
  });
});
