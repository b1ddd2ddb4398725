import { useCallback, useLayoutEffect, useRef, type RefObject } from 'react';

/** The part of a scrolling element the hook uses (an `HTMLElement` fits). */
export interface ScrollBox {
  scrollTop: number;
  readonly scrollHeight: number;
  readonly clientHeight: number;
}

/** The first and last item shown (their keys): how the hook tells older items above from new ones below. */
export interface ScrollEdges {
  first: string | undefined;
  last: string | undefined;
}

/** How close to the bottom counts as "at the bottom" (px). */
const AT_BOTTOM_PX = 48;

/**
 * Keeps a chat's scroll position through updates of its list:
 * - older items prepended above (`first` changed): what the user looks at
 *   stays where it was (the distance from the bottom is kept);
 * - a new item at the bottom (`last` changed): the view follows it when the
 *   user was at the bottom, and stays put when they had scrolled up to read;
 * - the first items: the view starts at the bottom (the newest).
 *
 * The position is read during the render that brings the change (before the
 * DOM changes) and restored in a layout effect (before the browser paints).
 * `stickToBottom()` makes the next change scroll to the bottom whatever the
 * position (the user sent a message).
 */
export function useKeepScrollPosition(ref: RefObject<ScrollBox | null>, edges: ScrollEdges): { stickToBottom: () => void } {
  const committed = useRef<ScrollEdges>({ first: undefined, last: undefined });
  const before = useRef<{ fromBottom: number; atBottom: boolean } | null>(null);
  const forceBottom = useRef(false);

  const el = ref.current;
  if (el && (edges.first !== committed.current.first || edges.last !== committed.current.last)) {
    const fromBottom = el.scrollHeight - el.scrollTop;
    before.current = { fromBottom, atBottom: fromBottom - el.clientHeight <= AT_BOTTOM_PX };
  }

  useLayoutEffect(() => {
    const box = ref.current;
    const prev = committed.current;
    const snapshot = before.current;
    committed.current = { first: edges.first, last: edges.last };
    before.current = null;
    if (!box || (prev.first === edges.first && prev.last === edges.last)) return;
    const toBottom = () => {
      box.scrollTop = box.scrollHeight;
    };
    if (prev.last === undefined || forceBottom.current) {
      forceBottom.current = false;
      return toBottom();
    }
    if (edges.last !== prev.last) {
      if (!snapshot || snapshot.atBottom) toBottom();
      return;
    }
    if (edges.first !== prev.first && snapshot) box.scrollTop = box.scrollHeight - snapshot.fromBottom;
  }, [ref, edges.first, edges.last]);

  const stickToBottom = useCallback(() => {
    forceBottom.current = true;
  }, []);
  return { stickToBottom };
}

/** True when the element is scrolled to (within a few px of) its bottom. */
export function isAtBottom(el: ScrollBox, slack = AT_BOTTOM_PX): boolean {
  return el.scrollHeight - el.scrollTop - el.clientHeight <= slack;
}
