// A small typed client of the Offers REST API. Every path, body, answer and
// problem type comes from `generated/api.ts`, which openapi-typescript makes
// from the document the server serves (`/api/v1/openapi.json`): a change to
// the document that breaks this client breaks `tsc --noEmit`.
import type { components, paths } from "./generated/api";

type Schemas = components["schemas"];
export type Tokens = Schemas["Tokens"];
export type Offer = Schemas["Offer"];
export type Accepted = Schemas["Accepted"];
export type ActivationStatus = Schemas["ActivationStatus"];
export type Problem = Schemas["Problem"];

/** The JSON body a path and method answer with `status`. */
type Answer<P extends keyof paths, M extends keyof paths[P], S extends number> = paths[P][M] extends {
  responses: { [K in S]: { content: { "application/json": infer Body } } };
}
  ? Body
  : never;

type ListOffersQuery = NonNullable<paths["/api/v1/offers/"]["get"]["parameters"]["query"]>;
type ActivateBody = NonNullable<paths["/api/v1/activation/"]["post"]["requestBody"]>["content"]["application/json"];

/** A problem+json answer: its stable `code` says what went wrong. */
export class ProblemError extends Error {
  constructor(
    readonly status: number,
    readonly problem: Problem,
  ) {
    super(`${status} ${problem.code}: ${problem.detail}`);
  }
}

export class OffersClient {
  private token: string | undefined;

  constructor(private readonly base: string) {}

  private async call<T>(method: "GET" | "POST", path: string, init: { body?: unknown; headers?: Record<string, string> } = {}): Promise<T> {
    const headers: Record<string, string> = { Accept: "application/json", ...init.headers };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    if (init.body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(`${this.base}${path}`, {
      method,
      headers,
      ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
    });
    const type = response.headers.get("content-type") ?? "";
    if (!response.ok) {
      if (!type.startsWith("application/problem+json")) {
        throw new Error(`${method} ${path}: ${response.status} without a problem document (${type})`);
      }
      throw new ProblemError(response.status, (await response.json()) as Problem);
    }
    return (await response.json()) as T;
  }

  async login(username: string, password: string): Promise<Tokens> {
    const body: Schemas["LoginBody"] = { username, password };
    const tokens = await this.call<Answer<"/api/v1/auth/login/", "post", 200>>("POST", "/api/v1/auth/login/", { body });
    this.token = tokens.access_token;
    return tokens;
  }

  async listOffers(query: ListOffersQuery = {}): Promise<Answer<"/api/v1/offers/", "get", 200>> {
    const params = new URLSearchParams();
    if (query.limit !== undefined) params.set("limit", String(query.limit));
    if (query.cursor !== undefined) params.set("cursor", query.cursor);
    const suffix = params.size ? `?${params}` : "";
    return this.call("GET", `/api/v1/offers/${suffix}`);
  }

  /** Buys `offerId`; the same `idempotencyKey` never charges twice. */
  async activate(offerId: string, idempotencyKey: string): Promise<Answer<"/api/v1/activation/", "post", 202>> {
    const body: ActivateBody = { offer_id: offerId };
    return this.call("POST", "/api/v1/activation/", { body, headers: { "Idempotency-Key": idempotencyKey } });
  }

  async status(transactionId: string): Promise<Answer<"/api/v1/activation/status/{transaction_id}/", "get", 200>> {
    return this.call("GET", `/api/v1/activation/status/${encodeURIComponent(transactionId)}/`);
  }

  /** Polls the status until the transaction leaves PENDING. */
  async settled(transactionId: string, timeoutMs = 60_000): Promise<ActivationStatus> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const current = await this.status(transactionId);
      if (current.status !== "PENDING") return current;
      if (Date.now() > deadline) throw new Error(`${transactionId} still PENDING after ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}
