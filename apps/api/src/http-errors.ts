import type { ErrorRequestHandler, RequestHandler, Response } from 'express';
import { BufferFullError, SafepkgError, UnavailableError, ValidationError, type ErrorDetail } from '@safepkg/core';

export class HttpError extends SafepkgError {
  constructor(
    readonly status: number,
    code: string,
    message: string,
    readonly details: ErrorDetail[] = [],
  ) {
    super(code, message);
  }
}

export function sendError(res: Response, status: number, code: string, message: string, details: ErrorDetail[] = []) {
  res.status(status).json({ error: { code, message, details } });
}

/** Rejects a body that is not JSON before it is read (415); a request with no body passes. */
export const requireJson: RequestHandler = (req, _res, next) => {
  // req.is: null without a body, false with a body of another type.
  if (req.is('application/json') === false) {
    next(new HttpError(415, 'unsupported_media_type', 'Content-Type must be application/json'));
    return;
  }
  next();
};

interface BodyParserError {
  type?: string;
  status?: number;
}

/**
 * Every error becomes the documented envelope: known errors with their status, body
 * parser errors as 400/413/415, anything else a bare 500 with no internals.
 */
export function errorHandler(retryAfterS: number): ErrorRequestHandler {
  return (err: unknown, req, res, next) => {
    if (res.headersSent) {
      next(err);
      return;
    }
    if (err instanceof ValidationError) return sendError(res, 400, err.code, err.message, err.details);
    if (err instanceof HttpError) return sendError(res, err.status, err.code, err.message, err.details);
    if (err instanceof BufferFullError || err instanceof UnavailableError) {
      res.setHeader('Retry-After', String(retryAfterS));
      return sendError(res, 503, err.code, err.message);
    }
    const parser = err as BodyParserError;
    switch (parser.type) {
      case 'entity.too.large':
        return sendError(res, 413, 'payload_too_large', 'request body exceeds 1 MB');
      case 'entity.parse.failed':
        return sendError(res, 400, 'invalid_request', 'request body is not valid JSON', [
          { path: '(body)', message: 'malformed JSON' },
        ]);
      case 'encoding.unsupported':
      case 'charset.unsupported':
        return sendError(res, 415, 'unsupported_media_type', 'body must be UTF-8 JSON');
      case 'request.aborted':
      case 'request.size.invalid':
        return sendError(res, 400, 'invalid_request', 'request body was incomplete');
    }
    if (typeof parser.status === 'number' && parser.status >= 400 && parser.status < 500) {
      return sendError(res, parser.status, 'invalid_request', 'request could not be read');
    }
    req.log?.error({ err }, 'unhandled error');
    sendError(res, 500, 'internal', 'internal error');
  };
}

export const notFound: RequestHandler = (req, res) => {
  sendError(res, 404, 'not_found', `no route ${req.method} ${req.path}`);
};
