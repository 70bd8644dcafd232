/** Names shared by the page and the service worker. */

/** The node's namespace Prudence lives in: the node's default (USERNAME_NAMESPACES=default:signed). */
export const NAMESPACE = 'default';
/** The IndexedDB database (the service worker opens the same one). */
export const DB_NAME = 'prudence';
/** An app-level message telling a new contact our username; verified against the directory on arrival, never shown. */
export const PROFILE_MIME = 'application/vnd.prudence.profile+json';
/** Prudence's table of verified names (account key hex → username). */
export const NAMES_TABLE = 'prudence.names';
