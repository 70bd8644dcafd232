/** Errors the SDK client raises; every one has a stable code (docs/api.md §Errors). */
export const SdkErrorCode = {
  /** The node answered with an error; `nodeCode` holds its MW_… code. */
  NODE_ERROR: 'MW_SDK_NODE_ERROR',
  /** The node could not be reached (network down, DNS, refused). Retried automatically where it makes sense. */
  UNREACHABLE: 'MW_SDK_UNREACHABLE',
  /** The node spoke something we do not understand (bad frame, unexpected reply). */
  PROTOCOL: 'MW_SDK_PROTOCOL',
  /** A content version newer than this SDK understands. */
  UNSUPPORTED_CONTENT: 'MW_SDK_UNSUPPORTED_CONTENT',
  /**
   * A contact's account key differs from the one first seen for that username (the directory now
   * names another account). Sending to it is held until the app calls acceptIdentityChange().
   */
  IDENTITY_CHANGED: 'MW_SDK_IDENTITY_CHANGED',
  /** The recipient's account is blocked on this device (unblock() first). */
  BLOCKED: 'MW_SDK_BLOCKED',
  /**
   * The node (or a stored record) uses a protocol or format version newer than this SDK speaks:
   * update the SDK. Raised as an `error` event by the connection, which stops retrying.
   */
  UNSUPPORTED_VERSION: 'MW_SDK_UNSUPPORTED_VERSION',
  /** The client was closed. */
  CLOSED: 'MW_SDK_CLOSED',
  /** A caller mistake (wrong argument). */
  INVALID_ARGUMENT: 'MW_SDK_INVALID_ARGUMENT',
  /**
   * A downloaded file failed verification: truncated, tampered, not the blob the message named
   * (digest mismatch) or not the size it announced. Discard everything read from the stream.
   */
  MEDIA_CORRUPT: 'MW_SDK_MEDIA_CORRUPT',
  /**
   * A contact card (the "mwc1:…" text of a contact QR code) could not be read: not a MeshWhisper
   * card, damaged, out of bounds, or made by a newer app (the message then says so: ask the user to
   * update).
   */
  INVALID_CONTACT_CARD: 'MW_SDK_INVALID_CONTACT_CARD',
  /**
   * A received message names a conversation this device does not know (content.proto
   * `conversation_id`: a group it is not a member of). It is reported as undecryptable, never
   * filed under another conversation.
   */
  UNKNOWN_CONVERSATION: 'MW_SDK_UNKNOWN_CONVERSATION',
  /**
   * A device link failed: a frame did not authenticate (someone between the devices tampered with
   * it), the other device gave up or closed, the offer was already used, or what it sent did not
   * verify. Nothing was issued (scanner) or stored (new device). Show a new QR code.
   */
  LINK_FAILED: 'MW_SDK_LINK_FAILED',
  /** The link offer expired before it was scanned, or the link did not finish in time. Show a new QR code. */
  LINK_EXPIRED: 'MW_SDK_LINK_EXPIRED',
  /**
   * Groups: a group message, sender key or typing signal from a device that is not a member device
   * of the group (a non-member holding the group id, a removed member); or this device tried to send
   * to a group it is no longer in. Nothing was stored.
   */
  GROUP_NOT_MEMBER: 'MW_SDK_GROUP_NOT_MEMBER',
  /**
   * Groups: this member may not make that change in the group's current state — kick, rename, add,
   * promote or transfer without being admin in an "admins" group, a kick in an admin-less group,
   * adding a member already there. Nothing changed.
   */
  GROUP_NOT_ALLOWED: 'MW_SDK_GROUP_NOT_ALLOWED',
  /** The account already has as many devices as the app allows (MeshWhisperOptions.maxDevices): revoke one first. */
  DEVICE_LIMIT: 'MW_SDK_DEVICE_LIMIT',
  /** What was typed is not a recovery key: a character outside its alphabet, the wrong length, or a typo its checksum caught. */
  RECOVERY_KEY_INVALID: 'MW_SDK_RECOVERY_KEY_INVALID',
  /** The recovery key or passphrase is well formed but opens no archive of this account (wrong key, wrong passphrase, another account's key). */
  ARCHIVE_WRONG_KEY: 'MW_SDK_ARCHIVE_WRONG_KEY',
  /** The account has no archive (never set up, or set up but never stored), or no account has that username. */
  ARCHIVE_NOT_FOUND: 'MW_SDK_ARCHIVE_NOT_FOUND',
  /** The archive was opened with the right key but does not decrypt or read: modified or damaged (or its key record was refused). */
  ARCHIVE_CORRUPT: 'MW_SDK_ARCHIVE_CORRUPT',
  /** A backup gave up: other devices kept storing new archive versions while it merged (try again). */
  ARCHIVE_CONFLICT: 'MW_SDK_ARCHIVE_CONFLICT',
  /** backup() on a device where the archive is not set up (enableArchive first). */
  ARCHIVE_NOT_ENABLED: 'MW_SDK_ARCHIVE_NOT_ENABLED',
  /** The passphrase fails the minimum strength rule (checkArchivePassphrase says why). */
  WEAK_PASSPHRASE: 'MW_SDK_WEAK_PASSPHRASE',
} as const;
export type SdkErrorCode = (typeof SdkErrorCode)[keyof typeof SdkErrorCode];

export class SdkError extends Error {
  override readonly name = 'SdkError';
  constructor(
    readonly code: SdkErrorCode,
    message: string,
    readonly nodeCode?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
