/** Prudence's entry: the service worker (offline shell, push wake), then the app. */
import { render } from 'preact';
import { App } from './ui/app.js';

if ('serviceWorker' in navigator) {
  // A module worker: it shares chunks with the page (the SDK), so the two stay in step.
  navigator.serviceWorker.register('/sw.js', { type: 'module', scope: '/' }).catch((e: unknown) => console.warn('service worker not registered:', e));
}

const root = document.getElementById('app')!;
root.textContent = ''; // the static "Loading…" line
render(<App />, root);
