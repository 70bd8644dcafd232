/**
 * Groups (docs/api.md §Groups): create one or join by link; the chat is the direct chat's screen
 * (`Chat` with a `g:` key); the members dialog adds, invites, kicks, promotes, hands the admin role
 * over, renames, makes the group admin-less, shares an invite link, and leaves.
 */
import { useState } from 'preact/hooks';
import type { GroupInfo, GroupInvitation } from '@meshwhisper/sdk';
import { qrSvg } from '@meshwhisper/sdk';
import type { Messenger } from '../lib/messenger.js';
import { GROUP_PREFIX } from '../lib/messenger.js';
import { svgDataUrl, toHex } from '../lib/util.js';
import { Chat } from './chat.js';
import { CopyButton, Dialog, ErrorText, ScreenHeader, useAction, useAsync, useVersion } from './common.js';

export function NewGroup({ m }: { m: Messenger }) {
  useVersion(m);
  const [name, setName] = useState('');
  const [chosen, setChosen] = useState<Set<string>>(new Set());
  const [more, setMore] = useState('');
  const action = useAction();
  const contacts = [...m.names.values()].filter((n) => n !== m.username).sort();
  const toggle = (n: string, on: boolean): void => {
    const next = new Set(chosen);
    if (on) next.add(n);
    else next.delete(n);
    setChosen(next);
  };
  return (
    <>
      <ScreenHeader title="New group" back="#/" />
      <main class="page">
        <form
          class="stack"
          onSubmit={(e) => {
            e.preventDefault();
            void action.run(async () => {
              const id = await m.createGroup(name, [...chosen, ...more.split(',')]);
              location.hash = `#/group/${id}`;
            });
          }}
        >
          <label for="group-name">Group name</label>
          <input id="group-name" required maxLength={64} value={name} onInput={(e) => setName(e.currentTarget.value)} />
          {contacts.length > 0 ? (
            <fieldset class="members">
              <legend>Members</legend>
              {contacts.map((n) => (
                <label class="check" key={n}>
                  <input type="checkbox" checked={chosen.has(n)} onChange={(e) => toggle(n, e.currentTarget.checked)} /> {n}
                </label>
              ))}
            </fieldset>
          ) : null}
          <label for="group-more">Other members (usernames, separated by commas)</label>
          <input id="group-more" autocapitalize="none" spellcheck={false} value={more} onInput={(e) => setMore(e.currentTarget.value)} />
          <p class="help">Everyone is added at once, with all their devices; you are the group’s admin. Only members can read what is written here.</p>
          <button type="submit" class="primary" disabled={action.busy}>
            {action.busy ? 'Creating…' : 'Create group'}
          </button>
          <ErrorText error={action.error} />
        </form>
        <JoinByLink m={m} />
      </main>
    </>
  );
}

function JoinByLink({ m }: { m: Messenger }) {
  const [link, setLink] = useState('');
  const [asked, setAsked] = useState<string | undefined>(undefined);
  const action = useAction();
  return (
    <form
      class="stack"
      aria-label="Join a group"
      onSubmit={(e) => {
        e.preventDefault();
        void action.run(async () => {
          await m.joinByLink(link);
          setAsked('Asked to join: the group opens in your list once a member’s device adds you.');
          setLink('');
        });
      }}
    >
      <h2>Join with a link</h2>
      <label for="group-link">Group link (mwg1:…)</label>
      <input id="group-link" autocapitalize="none" spellcheck={false} value={link} onInput={(e) => setLink(e.currentTarget.value)} />
      <button type="submit" disabled={action.busy || link.trim() === ''}>
        Ask to join
      </button>
      {asked ? (
        <p class="help" role="status">
          {asked}
        </p>
      ) : null}
      <ErrorText error={action.error} />
    </form>
  );
}

/** Group invitations received (`groupInvite`), answered from the chat list. */
export function GroupInvitations({ m }: { m: Messenger }) {
  const version = useVersion(m);
  const list = useAsync(() => m.invitations(), [version]);
  const action = useAction();
  if (!list || list.length === 0) return null;
  const answer = (inv: GroupInvitation, accept: boolean): void => void action.run(() => m.answerInvite(inv, accept));
  return (
    <section class="invitations" aria-label="Group invitations">
      <h2>Group invitations</h2>
      <ul class="stack">
        {list.map((inv) => (
          <li key={inv.inviteId} class="invitation" data-testid="group-invitation">
            <p>
              <strong>{m.nameOf(toHex(inv.inviter))}</strong> invites you to <strong>{inv.name}</strong>
            </p>
            <div class="row">
              <button type="button" class="primary" disabled={action.busy} onClick={() => answer(inv, true)} aria-label={`Accept the invitation to ${inv.name}`}>
                Accept
              </button>
              <button type="button" disabled={action.busy} onClick={() => answer(inv, false)} aria-label={`Decline the invitation to ${inv.name}`}>
                Decline
              </button>
            </div>
          </li>
        ))}
      </ul>
      <ErrorText error={action.error} />
    </section>
  );
}

export function GroupChat({ m, group }: { m: Messenger; group: string }) {
  const [members, setMembers] = useState(false);
  return (
    <>
      <Chat
        m={m}
        peer={GROUP_PREFIX + group}
        groupButtons={
          <button type="button" class="button" aria-label="Group members" onClick={() => setMembers(true)}>
            Members
          </button>
        }
      />
      <Members m={m} group={group} open={members} onClose={() => setMembers(false)} />
    </>
  );
}

/** May this account add members and rename (admins, or everyone in an admin-less group)? */
const canManage = (info: GroupInfo): boolean => info.isMember && (info.isAdmin || info.policy === 'admin-less');

function Members({ m, group, open, onClose }: { m: Messenger; group: string; open: boolean; onClose: () => void }) {
  const version = useVersion(m);
  const info = useAsync(() => m.groupInfo(group), [version, group, open]);
  const action = useAction();
  const [who, setWho] = useState('');
  const [rename, setRename] = useState<string | undefined>(undefined);
  const [link, setLink] = useState<string | undefined>(undefined);
  const [done, setDone] = useState<string | undefined>(undefined);
  const me = toHex(m.client.accountKey);
  const admins = info?.members.filter((p) => p.admin) ?? [];
  const lastAdmin = info?.isAdmin === true && info.policy === 'admins' && admins.length === 1 && info.members.length > 1;
  const run = (fn: () => Promise<unknown>, message?: string): void =>
    void action.run(async () => {
      setDone(undefined);
      await fn();
      if (message) setDone(message);
    });
  return (
    <Dialog open={open} onClose={onClose} title="Group members">
      {info ? (
        <div class="dialog-body stack">
          <p class="help" data-testid="group-policy">
            {info.policy === 'admin-less' ? 'Admin-less: every member may add people and rename the group; nobody can remove anyone.' : 'Admins add, remove and rename.'}
          </p>
          <ul class="stack members-list" data-testid="group-members">
            {info.members.map((p) => {
              const key = toHex(p.accountKey);
              const name = key === me ? 'You' : m.nameOf(key);
              const adminOps = info.isMember && info.isAdmin && info.policy === 'admins' && key !== me;
              return (
                <li key={key} class="member" data-member={key === me ? 'me' : m.names.get(key) ?? key}>
                  <span>
                    {name}
                    {p.admin ? <span class="meta"> (admin)</span> : null}
                  </span>
                  {adminOps ? (
                    <span class="row">
                      {!p.admin ? (
                        <button type="button" class="small" disabled={action.busy} aria-label={`Make admin: ${name}`} onClick={() => run(() => m.manageGroup(group, 'promote', key))}>
                          Make admin
                        </button>
                      ) : null}
                      <button type="button" class="small" disabled={action.busy} aria-label={`Hand admin over to ${name}`} onClick={() => run(() => m.manageGroup(group, 'transfer', key))}>
                        Hand admin over
                      </button>
                      <button type="button" class="small danger" disabled={action.busy} aria-label={`Remove ${name}`} onClick={() => run(() => m.manageGroup(group, 'kick', key))}>
                        Remove
                      </button>
                    </span>
                  ) : null}
                </li>
              );
            })}
          </ul>
          {canManage(info) ? (
            <>
              <form
                class="stack"
                aria-label="Rename the group"
                onSubmit={(e) => {
                  e.preventDefault();
                  run(async () => ((await m.renameGroup(group, rename ?? info.name)), setRename(undefined)));
                }}
              >
                <label for="group-rename">Group name</label>
                <div class="row">
                  <input id="group-rename" required maxLength={64} value={rename ?? info.name} onInput={(e) => setRename(e.currentTarget.value)} />
                  <button type="submit" disabled={action.busy || rename === undefined || rename.trim() === '' || rename.trim() === info.name}>
                    Rename
                  </button>
                </div>
              </form>
              <form
                class="stack"
                aria-label="Add or invite someone"
                onSubmit={(e) => {
                  e.preventDefault();
                  const name = who;
                  run(async () => ((await m.addToGroup(group, name)), setWho('')), `${name.trim()} was added.`);
                }}
              >
                <label for="group-who">Add or invite by username</label>
                <input id="group-who" autocapitalize="none" spellcheck={false} value={who} onInput={(e) => setWho(e.currentTarget.value)} />
                <div class="row">
                  <button type="submit" disabled={action.busy || who.trim() === ''}>
                    Add now
                  </button>
                  <button
                    type="button"
                    disabled={action.busy || who.trim() === ''}
                    onClick={() => {
                      const name = who;
                      run(async () => ((await m.inviteToGroup(group, name)), setWho('')), `${name.trim()} was invited: they join when they accept.`);
                    }}
                  >
                    Invite
                  </button>
                </div>
              </form>
              {link ? (
                <div class="stack" data-testid="group-link">
                  <img class="qr" src={svgDataUrl(qrSvg(link, { margin: 2, moduleSize: 3 }))} alt="The group link as a QR code" width={220} height={220} />
                  <label for="group-link-text">Invite link (anyone holding it may ask to join)</label>
                  <input id="group-link-text" readOnly value={link} />
                  <CopyButton text={link} label="Copy the link" />
                </div>
              ) : (
                <button type="button" disabled={action.busy} onClick={() => run(async () => setLink(await m.inviteLink(group)))}>
                  Invite link
                </button>
              )}
            </>
          ) : null}
          {info.isMember && info.isAdmin && info.policy === 'admins' ? (
            <button type="button" disabled={action.busy} onClick={() => run(() => m.makeAdminLess(group), 'The group is now admin-less.')}>
              Make the group admin-less (one way)
            </button>
          ) : null}
          {done ? (
            <p class="help" role="status">
              {done}
            </p>
          ) : null}
          {info.isMember ? (
            <>
              {lastAdmin ? <p class="help">You are the only admin: if you leave, the longest-standing member becomes admin.</p> : null}
              <button type="button" class="danger" disabled={action.busy} onClick={() => run(async () => ((await m.leaveGroup(group)), onClose()))}>
                Leave the group
              </button>
            </>
          ) : null}
          <ErrorText error={action.error} />
        </div>
      ) : null}
    </Dialog>
  );
}


