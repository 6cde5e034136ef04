/** onramp SDK: in-app onboarding and milestone tracking. */

export interface InitOptions {
  /** The project's public write key, e.g. "wk_demo". */
  writeKey: string;
  /** The collector's base URL; defaults to the page's origin. */
  collector?: string;
  /** The onboarding plan: an object, the URL it is served from, or false for none. Default: the
   *  collector's plan for this write key (`GET /v1/plan`). A plan that does not validate disables
   *  onramp with one console error naming the field. */
  plan?: object | string | false;
  /** How tips look and speak (docs/TIPS.md). */
  tips?: TipsOptions;
}

/** The tips' locale, direction, theme and the labels of their buttons. */
export interface TipsOptions {
  /** Locale of the plan's texts, e.g. "de". Default: `<html lang>`, then `navigator.language`,
   *  then the plan's `defaultLocale`. */
  locale?: string;
  /** Text direction. Default: `<html dir>`. */
  dir?: "ltr" | "rtl";
  /** Colour theme. Default: the system's (`prefers-color-scheme`). */
  theme?: "light" | "dark";
  /** The tips' own words, in the page's language; English where not given. */
  labels?: TipsLabels;
}

export interface TipsLabels {
  next?: string;
  back?: string;
  done?: string;
  skip?: string;
  later?: string;
  gotIt?: string;
  close?: string;
  /** Between step numbers: "2 of 5". */
  of?: string;
  markDone?: string;
  showMe?: string;
  checklist?: string;
  progress?: string;
  tip?: string;
  completed?: string;
}

export interface Traits {
  /** When the user signed up: Unix milliseconds or an ISO 8601 string. */
  signedUpAt?: number | string;
  [trait: string]: unknown;
}

export type Props = Record<string, unknown>;

/** Starts the SDK. Calls made before the wasm has loaded are kept and replayed in order. */
export function init(options: InitOptions): void;
/** Names the current user; earlier anonymous events are linked to them. Identifying as a
 *  different user than the current one starts a fresh anonymous id and fresh local state, as
 *  `reset()` would: one anonymous id never maps to two users (docs/IDENTITY.md). */
export function identify(userId: string, traits?: Traits): void;
/** The account (company, workspace, team) the user works in. Every later event carries it as
 *  `props.accountId`, across page views, until `reset()`; `traits` describe the account and are
 *  sent once, with a `group` event. */
export function group(accountId: string, traits?: Record<string, unknown>): void;
/** Records a product event. */
export function track(name: string, props?: Props): void;
/** Marks a customer milestone of the plan as done (the user confirmed it, or your server did). */
export function complete(milestone: string): void;
/** Log-out: forgets the user and their account, and starts a new anonymous identity. */
export function reset(): void;
/** Sends queued events now. Resolves once everything queued before the call has been
 *  acknowledged by the collector (or dropped: refused, expired); at once when onramp cannot run. */
export function flush(): Promise<void>;
/** What a prompt's host action tells the app. */
export interface ActionContext {
  /** The prompt's id in the plan. */
  promptId: string;
  /** The milestone that opened the prompt. */
  milestone: string;
  userId: string;
}
/** Host callbacks: `on("action", (name, context) => …)` runs when a prompt's call to action asks
 *  the app to act (`name` is the plan's `cta.action`, e.g. "open_invite_dialog"). Works before
 *  the SDK has loaded. Returns a function that removes the callback. */
export function on(type: "action", callback: (name: string, context: ActionContext) => void): () => void;
/** Loads the wasm; resolves false when it cannot run here (for example a strict CSP). */
export function load(base?: string, wasm?: string | URL | Promise<Response>): Promise<boolean>;
/** Used by the script-tag loader: `wasm` is the module's URL or its fetch already under way. */
export function attach(queue: unknown[], base?: string, wasm?: string | URL | Promise<Response>): void;
