/**
 * The app tables the client keeps in its storage (docs/api.md §Storage tables), one owner module
 * each. The history's tables are in history.ts.
 */
export const Table = {
  /**
   * This device's own settings (devices.ts, layout.ts, link.ts): 'delivery-token', 'account-seed',
   * 'layout', 'certificate-published' (u64 issuedAt of the certificate the node last accepted from
   * us). (The account's own device list is in DeviceList, under its account key.)
   */
  Self: 'mw.self',
  /** Sealed envelopes not yet accepted by the node, by `${message id}:${mailbox hex}`: 32-byte mailbox id ‖ envelope (outbox.ts). */
  Outbox: 'mw.outbox',
  /** The delivery token each peer device gave us, by device address (directory.ts). */
  PeerToken: 'mw.peer-token',
  /** State of each message this device sent, by message id (message-states.ts). */
  Sent: 'mw.sent',
  /** The account key first seen for each username (trust on first use), by username (directory.ts). */
  ContactAccount: 'mw.contact-account',
  /** Blocked accounts, by account key hex (value empty) (contacts.ts). */
  Blocked: 'mw.blocked',
  /** Contact state per account key hex (contacts.ts). */
  Contact: 'mw.contact',
  /** Disappearing-message timer per conversation (timers.ts). */
  Timer: 'mw.timer',
  /** Receipts waiting for their random delay, by `${kind}:${mailbox hex}`: a StoredReceipt (receipts.ts). */
  Receipt: 'mw.receipt',
  /**
   * Messages a recipient device has not confirmed (no delivery receipt yet), by
   * `${mailbox hex}/${message id hex}`: a StoredUnconfirmed — re-sent, encrypted anew, when that
   * device reports it could not decrypt (unconfirmed.ts).
   */
  Unconfirmed: 'mw.unconfirmed',
  /** The same entries by age, `${sent at, 15 digits}/${mailbox hex}/${message id hex}` → empty: pruning reads keys only (unconfirmed.ts). */
  UnconfirmedAge: 'mw.unconfirmed-age',
  /**
   * The newest verified device list of each account this device deals with — its own included —
   * by account key hex: the DeviceList encoding (versioned by its first byte, account-signed)
   * (device-lists.ts).
   */
  DeviceList: 'mw.device-list',
  /**
   * When the node was last asked for each account's device list (u64 ms, by account key hex): a
   * message is judged against a list checked within DEVICE_LIST_MAX_AGE_MS (device-lists.ts).
   */
  DeviceListChecked: 'mw.device-list-checked',
} as const;
