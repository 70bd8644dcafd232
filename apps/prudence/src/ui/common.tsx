/** Hooks and small components every screen uses. */
import type { ComponentChildren, RefObject } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import type { Messenger } from '../lib/messenger.js';
import { describeError } from '../lib/messenger.js';

/** Re-renders the component whenever the messenger changes; returns its version (a dependency for useAsync). */
export function useVersion(m: Messenger): number {
  const [version, setVersion] = useState(m.version);
  useEffect(() => m.subscribe(() => setVersion(m.version)), [m]);
  return version;
}

/** The latest result of an async function, re-run when `deps` change; the previous value stays until then. */
export function useAsync<T>(fn: () => Promise<T>, deps: unknown[]): T | undefined {
  const [value, setValue] = useState<T | undefined>(undefined);
  useEffect(() => {
    let live = true;
    fn().then(
      (v) => live && setValue(() => v),
      () => undefined,
    );
    return () => {
      live = false;
    };
  }, deps);
  return value;
}

/** Runs an action, with a busy flag and its error as text (shown in a role=alert element). */
export function useAction(): { busy: boolean; error: string | undefined; run: (fn: () => Promise<unknown>) => Promise<void>; clear: () => void } {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | undefined>(undefined);
  return {
    busy,
    error,
    clear: () => setError(undefined),
    run: async (fn) => {
      setBusy(true);
      setError(undefined);
      try {
        await fn();
      } catch (e) {
        setError(describeError(e));
      } finally {
        setBusy(false);
      }
    },
  };
}

export function ErrorText({ error }: { error: string | undefined }) {
  return error ? (
    <p class="error" role="alert">
      {error}
    </p>
  ) : null;
}

/** A modal <dialog>: the browser traps focus and closes on Escape. */
export function Dialog({ open, onClose, title, children }: { open: boolean; onClose: () => void; title: string; children: ComponentChildren }) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const d = ref.current;
    if (!d) return;
    if (open && !d.open) d.showModal();
    if (!open && d.open) d.close();
  }, [open]);
  return (
    <dialog ref={ref} onClose={onClose} aria-label={title}>
      <header class="dialog-head">
        <h2>{title}</h2>
        <button type="button" class="icon" aria-label="Close" onClick={onClose}>
          ✕
        </button>
      </header>
      {open ? children : null}
    </dialog>
  );
}

/** Header of a screen: a back link (except on the list), the title, and actions. */
export function ScreenHeader({ title, back, children }: { title: ComponentChildren; back?: string; children?: ComponentChildren }) {
  return (
    <header class="bar">
      {back !== undefined ? (
        <a class="icon" href={back} aria-label="Back">
          ←
        </a>
      ) : null}
      <h1>{title}</h1>
      <div class="actions">{children}</div>
    </header>
  );
}

/** Copies text, saying so for screen readers. */
export function CopyButton({ text, label }: { text: string; label: string }) {
  const [done, setDone] = useState(false);
  return (
    <button
      type="button"
      onClick={() => {
        void navigator.clipboard?.writeText(text).then(() => setDone(true), () => setDone(false));
      }}
    >
      {done ? 'Copied' : label}
    </button>
  );
}

export function Avatar({ name }: { name: string }) {
  return (
    <span class="avatar" aria-hidden="true">
      {name.slice(0, 1).toUpperCase()}
    </span>
  );
}

/** Scrolls an element into view whenever `key` changes. */
export function useScrollToEnd(ref: RefObject<HTMLElement | null>, key: unknown): void {
  useEffect(() => {
    const el = ref.current;
    if (el) el.scrollTop = el.scrollHeight;
  }, [key]);
}

export function ConnectionChip({ m }: { m: Messenger }) {
  const state = m.client.connectionState;
  const text = state === 'online' ? 'Online' : state === 'connecting' ? 'Connecting…' : state === 'offline' ? 'Offline: messages wait in the outbox' : 'Closed';
  return (
    <span class={`chip ${state}`} role="status" data-connection={state}>
      {text}
    </span>
  );
}
