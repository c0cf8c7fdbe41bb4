/**
 * Results that are synchronous when nothing has to be waited for: a client's
 * publish to a channel without history goes from the frame to the topic and
 * back to its reply in one call, with no promise and no microtask on the way.
 */

export type MaybePromise<T> = T | Promise<T>;

/** `f` of the value: at once when it is one, once it resolves when it is a promise. */
export const andThen = <T, R>(value: MaybePromise<T>, f: (value: T) => MaybePromise<R>): MaybePromise<R> =>
  value instanceof Promise ? value.then(f) : f(value);
