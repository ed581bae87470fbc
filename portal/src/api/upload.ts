// Dataset uploads go to the REST route, whose body is the file itself: streamed to the server's
// disk as it arrives. XMLHttpRequest, not fetch, because only it reports upload progress.
import { CSRF_HEADER } from './csrfFetch';
import type { ApiErrorLike } from './errors';

export interface UploadedVersion {
  version: { id: string; number: number; rowCount: number; sizeBytes: number; sourceFormat: string };
  created: boolean;
}

export interface UploadRequest {
  project: string;
  dataset: string;
  file: Blob;
  csrfToken: string;
  description?: string;
  onProgress?: (fraction: number) => void;
  /** Told when the API answers 401: the session ended, as the GraphQL client's fetch is told. */
  onUnauthorized?: () => void;
}

export function uploadUrl(project: string, dataset: string, description?: string): string {
  const path = `/v1/projects/${encodeURIComponent(project)}/datasets/${encodeURIComponent(dataset)}/versions`;
  return description ? `${path}?${new URLSearchParams({ description }).toString()}` : path;
}

function errorOf(xhr: XMLHttpRequest): ApiErrorLike {
  try {
    const body = JSON.parse(xhr.responseText) as { error?: ApiErrorLike };
    if (body.error && typeof body.error.code === 'string') return body.error;
  } catch {
    // Not JSON: described by the status below.
  }
  if (xhr.status === 0) return { code: 'NETWORK_ERROR', message: 'the upload did not reach the server' };
  return { code: `HTTP_${xhr.status}`, message: xhr.statusText || 'upload failed' };
}

/** Resolves with the version; rejects with an ApiErrorLike. `abort` stops it. */
export function uploadDatasetVersion(request: UploadRequest): { done: Promise<UploadedVersion>; abort: () => void } {
  const xhr = new XMLHttpRequest();
  const done = new Promise<UploadedVersion>((resolve, reject) => {
    xhr.open('POST', uploadUrl(request.project, request.dataset, request.description));
    xhr.setRequestHeader(CSRF_HEADER, request.csrfToken);
    xhr.setRequestHeader('content-type', 'application/octet-stream');
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable && event.total > 0) request.onProgress?.(event.loaded / event.total);
    };
    xhr.onload = () => {
      if (xhr.status === 401) request.onUnauthorized?.();
      if (xhr.status === 200 || xhr.status === 201) {
        try {
          resolve(JSON.parse(xhr.responseText) as UploadedVersion);
        } catch {
          reject({ code: 'BAD_RESPONSE', message: 'the server answered something that is not JSON' });
        }
      } else reject(errorOf(xhr));
    };
    xhr.onerror = () => reject(errorOf(xhr));
    xhr.onabort = () => reject({ code: 'CANCELLED', message: 'the upload was cancelled' });
    xhr.send(request.file);
  });
  return { done, abort: () => xhr.abort() };
}
