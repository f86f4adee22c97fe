import { useCallback, useLayoutEffect, useRef, useState } from 'react';

/** How close to the end (px) still counts as "at the end": a user reading the last line keeps following. */
const SLACK = 48;

/**
 * A scrolling pane that follows new content (a streaming reply) while the user is at its end, stays put
 * once they scroll up, and offers a way back (`toEnd`).
 */
export function useFollowScroll(resetKey: unknown, content: string) {
  const ref = useRef<HTMLDivElement | null>(null);
  const following = useRef(true);
  const [atEnd, setAtEnd] = useState(true);

  const onScroll = useCallback(() => {
    const el = ref.current;
    if (!el) return;
    const end = el.scrollHeight - el.scrollTop - el.clientHeight <= SLACK;
    following.current = end;
    setAtEnd(end);
  }, []);

  const toEnd = useCallback(() => {
    const el = ref.current;
    if (!el) return;
    following.current = true;
    setAtEnd(true);
    el.scrollTop = el.scrollHeight;
  }, []);

  // Another conversation opens at its end, following.
  // biome-ignore lint/correctness/useExhaustiveDependencies: runs when the key changes
  useLayoutEffect(() => {
    following.current = true;
    setAtEnd(true);
  }, [resetKey]);

  // `content` summarises what is shown (it changes when the thread grows).
  // biome-ignore lint/correctness/useExhaustiveDependencies: runs when the content changes
  useLayoutEffect(() => {
    const el = ref.current;
    if (!el) return;
    if (following.current) el.scrollTop = el.scrollHeight;
    else setAtEnd(el.scrollHeight - el.scrollTop - el.clientHeight <= SLACK);
  }, [content]);

  return { ref, onScroll, atEnd, toEnd };
}
