/**
 * Contacts and blocking: who this device is in touch with ('request' until the app accepts an
 * account that wrote first, 'accepted' once either side wrote deliberately), and who is blocked.
 */
import { fromHex, toHex } from '@meshwhisper/crypto';
import { StoredContactSchema, StoredContactState, create, fromBinary, toBinary } from '@meshwhisper/protocol';
import type { AppStore, ProtocolStorage } from '../storage/types.js';
import { asStorageTx } from '../storage/types.js';
import { Directory, checkAccountKey } from './directory.js';
import { directConversation } from './conversation.js';
import { SdkError, SdkErrorCode } from './errors.js';
import { acceptConversation, clearConversation } from './history.js';
import { Table } from './tables.js';
import type { ContactState } from './types.js';

export const CONTACT_RECORD_VERSION = 1;

/** What the user decided about an account (synced to the account's other devices: ContactSync). */
export type ContactDecision = 'accept' | 'decline' | 'block' | 'unblock';

export function decodeContact(b: Uint8Array): ContactState | undefined {
  let r;
  try {
    r = fromBinary(StoredContactSchema, b);
  } catch (e) {
    throw new SdkError(SdkErrorCode.PROTOCOL, 'a stored contact record cannot be decoded', undefined, { cause: e });
  }
  if (r.version > CONTACT_RECORD_VERSION) throw new SdkError(SdkErrorCode.UNSUPPORTED_VERSION, `contact record version ${r.version} was written by a newer SDK: update the app`);
  return r.state === StoredContactState.ACCEPTED ? 'accepted' : r.state === StoredContactState.REQUEST ? 'request' : undefined;
}

export function encodeContact(state: ContactState): Uint8Array {
  return toBinary(StoredContactSchema, create(StoredContactSchema, { version: CONTACT_RECORD_VERSION, state: state === 'accepted' ? StoredContactState.ACCEPTED : StoredContactState.REQUEST }));
}

export class Contacts {
  constructor(private readonly storage: ProtocolStorage) {}

  /** The contact state of an account, read in `store` (a transaction, or the storage). */
  async stateIn(store: AppStore, accountKey: Uint8Array): Promise<ContactState | undefined> {
    const b = await store.getItem(Table.Contact, toHex(accountKey));
    return b ? decodeContact(b) : undefined;
  }

  state(accountKey: Uint8Array): Promise<ContactState | undefined> {
    return this.stateIn(this.storage, accountKey);
  }

  async setStateIn(stx: AppStore, accountKey: Uint8Array, state: ContactState): Promise<void> {
    await stx.setItem(Table.Contact, toHex(accountKey), encodeContact(state));
  }

  async list(): Promise<{ accountKey: Uint8Array; state: ContactState }[]> {
    const out: { accountKey: Uint8Array; state: ContactState }[] = [];
    for (const { key, value } of await this.storage.listItems(Table.Contact)) {
      const state = decodeContact(value);
      if (state) out.push({ accountKey: fromHex(key), state });
    }
    return out;
  }

  async accept(accountKey: Uint8Array): Promise<void> {
    checkAccountKey(accountKey);
    await this.storage.transaction((tx) => this.applyIn(asStorageTx(tx), accountKey, 'accept'));
  }

  async decline(accountKey: Uint8Array, options: { block?: boolean }): Promise<void> {
    checkAccountKey(accountKey);
    await this.storage.transaction((tx) => this.applyIn(asStorageTx(tx), accountKey, 'decline'));
    if (options.block) await this.block(accountKey);
  }

  async block(accountKey: Uint8Array): Promise<void> {
    checkAccountKey(accountKey);
    await this.storage.transaction((tx) => this.applyIn(asStorageTx(tx), accountKey, 'block'));
  }

  async unblock(accountKey: Uint8Array): Promise<void> {
    await this.storage.transaction((tx) => this.applyIn(asStorageTx(tx), accountKey, 'unblock'));
  }

  /** A contact decision, made here or on another device of the account (own-device sync), in `stx`. */
  async applyIn(stx: AppStore, accountKey: Uint8Array, action: ContactDecision): Promise<void> {
    switch (action) {
      case 'accept':
        await this.setStateIn(stx, accountKey, 'accepted');
        await acceptConversation(stx, accountKey);
        return;
      case 'decline':
        await stx.deleteItem(Table.Contact, toHex(accountKey));
        await clearConversation(stx, directConversation(accountKey));
        await Directory.forgetAccountTokens(stx, accountKey);
        return;
      case 'block':
        await stx.setItem(Table.Blocked, toHex(accountKey), new Uint8Array(0));
        await Directory.forgetAccountTokens(stx, accountKey);
        return;
      case 'unblock':
        await stx.deleteItem(Table.Blocked, toHex(accountKey));
        return;
    }
  }

  async isBlockedIn(store: AppStore, accountKey: Uint8Array): Promise<boolean> {
    return (await store.getItem(Table.Blocked, toHex(accountKey))) !== undefined;
  }

  isBlocked(accountKey: Uint8Array): Promise<boolean> {
    return this.isBlockedIn(this.storage, accountKey);
  }
}
