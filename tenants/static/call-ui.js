// The in-call controls of both sides (the visitor's page and the expert's call page):
// mute, camera, screen sharing, full screen, the camera/microphone picker, what the
// other side is doing (camera off, muted, sharing: told by their browser over the data
// channel), and the chat. Chat messages exist only in this page while the call lasts:
// they are not sent to the server, not kept in the browser's storage, and removed from
// the page when the call ends.
import { CHAT_MAX_BYTES, CallSession, playVideo, utf8Bytes } from './call.js';
import { rememberDevice } from './device-memory.js';
import { formatTime, t } from '/static/i18n.js';

const $ = (id) => document.getElementById(id);

/** Up to two initials of a name ("Ada Lovelace" → "AL"), for the camera-off placeholder. */
export function initials(name) {
  const words = String(name || '').trim().split(/\s+/).filter((w) => /\p{L}/u.test(w));
  if (words.length === 0) return '';
  const first = (word) => Array.from(word.replace(/^[^\p{L}]+/u, ''))[0] || '';
  const picked = words.length === 1 ? [first(words[0])] : [first(words[0]), first(words[words.length - 1])];
  return picked.join('').toLocaleUpperCase();
}

const SVG = 'http://www.w3.org/2000/svg';

/** A person icon, when the other side's name is not known. */
function personIcon() {
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('class', 'person-icon');
  svg.setAttribute('aria-hidden', 'true');
  const path = document.createElementNS(SVG, 'path');
  path.setAttribute('d', 'M12 12a4.5 4.5 0 1 0 0-9 4.5 4.5 0 0 0 0 9Zm0 2c-4.4 0-8 2.5-8 5.5V21h16v-1.5c0-3-3.6-5.5-8-5.5Z');
  path.setAttribute('fill', 'currentColor');
  svg.append(path);
  return svg;
}

function pressed(button, on, onText, offText) {
  button.setAttribute('aria-pressed', String(on));
  button.textContent = on ? onText : offText;
}

export class CallControls {
  /**
   * options: peerName (the other side's name as the server knows it), expectedName (whom
   * this page expects, until the other side tells its own name over the data channel:
   * the room's expert), peerFallback (how to call them otherwise: "The expert").
   */
  constructor(session, options = {}) {
    this.session = session;
    this.knownName = options.peerName || null;
    this.expectedName = options.expectedName || null;
    this.peerFallback = options.peerFallback || t('The other person');
    this.unread = 0;
    this.bind();
  }

  /** The other side's name as far as this page knows it. */
  get peerName() {
    return this.knownName || (this.session.peerState && this.session.peerState.name) || this.expectedName;
  }

  get peerLabel() {
    return this.peerName || this.peerFallback;
  }

  bind() {
    const s = this.session;
    $('mute').addEventListener('click', () => {
      s.setMuted(!s.muted);
      this.showOwnState();
    });
    $('camera').addEventListener('click', () => {
      s.setCameraOff(!s.cameraOff);
      this.showOwnState();
    });
    $('share').hidden = !CallSession.canShareScreen();
    $('share').addEventListener('click', async () => {
      if (s.screenTrack) await s.stopScreenShare();
      else await s.startScreenShare();
    });
    $('sound-on').addEventListener('click', (event) => {
      const remote = $('remote');
      remote.muted = false;
      playVideo(remote);
      event.currentTarget.hidden = true;
    });
    this.bindFullScreen();
    this.bindDevices();
    this.bindChat();

    s.addEventListener('peer-state', () => this.showPeerState());
    s.addEventListener('screen-share', () => this.showOwnState());
    s.addEventListener('sound-blocked', () => { $('sound-on').hidden = false; });
    s.addEventListener('local-media', () => {
      this.showOwnState();
      this.fillDevices();
    });
    s.addEventListener('channel', (event) => {
      if (event.detail.open) $('chat-error').textContent = '';
    });
    s.addEventListener('finished', () => this.clearChat());
    this.showPeerState();
    this.showOwnState();
  }

  // --- this side ------------------------------------------------------------------------

  showOwnState() {
    const s = this.session;
    pressed($('mute'), s.muted, t('Unmute'), t('Mute'));
    pressed($('camera'), s.cameraOff, t('Camera on'), t('Camera off'));
    pressed($('share'), !!s.screenTrack, t('Stop sharing'), t('Share screen'));
    $('local-off').hidden = !(s.cameraOff && !s.screenTrack);
  }

  // --- the other side -------------------------------------------------------------------

  showPeerState() {
    const state = this.session.peerState;
    const name = this.peerLabel;
    const off = !!state && !state.sharing && (state.cameraOff || !state.camera);
    const placeholder = $('remote-off');
    const avatar = $('remote-avatar');
    const letters = initials(this.peerName);
    avatar.replaceChildren(letters || personIcon());
    $('remote-off-text').textContent = state && !state.camera ? t('No camera') : t('Camera is off');
    placeholder.setAttribute('aria-label', state && !state.camera
      ? t('%(name)s has no camera', { name })
      : t('%(name)s has turned the camera off', { name }));
    placeholder.hidden = !off;
    $('remote').classList.toggle('camera-off', off);

    const muted = $('peer-muted');
    const mutedText = !state ? '' : !state.microphone
      ? t('%(name)s has no microphone', { name })
      : state.muted ? t('%(name)s is muted', { name }) : '';
    $('peer-muted-text').textContent = mutedText;
    muted.hidden = !mutedText;

    const sharing = $('peer-sharing');
    sharing.textContent = state && state.sharing ? t('%(name)s is sharing their screen', { name }) : '';
    sharing.hidden = !(state && state.sharing);
    $('remote').classList.toggle('screen', !!(state && state.sharing));

    // Say what changed to screen readers (once per change, not on every state message).
    const said = [off ? placeholder.getAttribute('aria-label') : '', mutedText, sharing.textContent]
      .filter(Boolean).join('. ');
    if (said !== this.lastSaid) {
      if (this.lastSaid !== undefined && said) this.announce(said);
      this.lastSaid = said;
    }
  }

  announce(text) {
    const box = $('call-announce');
    box.textContent = '';
    setTimeout(() => { box.textContent = text; }, 50);
  }

  // --- full screen ----------------------------------------------------------------------

  bindFullScreen() {
    const button = $('fullscreen');
    const area = $('call-area');
    if (!document.fullscreenEnabled || !area.requestFullscreen) {
      button.hidden = true;
      return;
    }
    const show = () => pressed(button, document.fullscreenElement === area, t('Exit full screen'), t('Full screen'));
    button.addEventListener('click', async () => {
      try {
        if (document.fullscreenElement) await document.exitFullscreen();
        else await area.requestFullscreen();
      } catch {
        /* the browser said no (e.g. not from a click): nothing to do */
      }
    });
    document.addEventListener('fullscreenchange', show);
    show();
  }

  // --- cameras and microphones ----------------------------------------------------------

  bindDevices() {
    for (const [kind, id] of [['video', 'camera-select'], ['audio', 'microphone-select']]) {
      $(id).addEventListener('change', async (event) => {
        const select = event.currentTarget;
        $('devices-error').textContent = '';
        select.disabled = true;
        try {
          await this.session.useDevice(kind, select.value);
          rememberDevice(kind, select.value); // only if the visitor asked this browser to remember it
        } catch {
          $('devices-error').textContent = kind === 'video'
            ? t('This camera could not start. It may be in use by another program.')
            : t('This microphone could not start. It may be in use by another program.');
        } finally {
          select.disabled = false;
          this.fillDevices();
        }
      });
    }
    if (navigator.mediaDevices && navigator.mediaDevices.addEventListener) {
      navigator.mediaDevices.addEventListener('devicechange', () => this.fillDevices());
    }
    this.fillDevices();
  }

  async fillDevices() {
    let found;
    try {
      found = await CallSession.devices();
    } catch {
      found = { video: [], audio: [] };
    }
    const fill = (select, devices, inUse, nameOf) => {
      const options = devices.map((device, index) => {
        const option = document.createElement('option');
        option.value = device.deviceId;
        option.textContent = device.label || nameOf(index + 1);
        option.selected = device.deviceId === inUse;
        return option;
      });
      if (options.length === 0) {
        const none = document.createElement('option');
        none.value = '';
        none.textContent = t('None found');
        options.push(none);
      }
      select.replaceChildren(...options);
      select.disabled = devices.length < 2 && !!inUse;
    };
    fill($('camera-select'), found.video, this.session.deviceInUse('video'), (n) => t('Camera %(number)s', { number: n }));
    fill($('microphone-select'), found.audio, this.session.deviceInUse('audio'),
      (n) => t('Microphone %(number)s', { number: n }));
    $('devices').hidden = found.video.length + found.audio.length === 0;
  }

  // --- chat -----------------------------------------------------------------------------

  bindChat() {
    const toggle = $('chat-toggle');
    toggle.addEventListener('click', () => this.showChat($('chat').hidden));
    $('chat-close').addEventListener('click', () => {
      this.showChat(false);
      toggle.focus();
    });
    const input = $('chat-input');
    $('chat-form').addEventListener('submit', (event) => {
      event.preventDefault();
      this.send();
    });
    input.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.send();
      }
    });
    input.addEventListener('input', () => {
      if (input.getAttribute('aria-invalid') === 'true' && utf8Bytes(input.value) <= CHAT_MAX_BYTES) this.chatError('');
    });
    this.session.addEventListener('chat', (event) => this.received(event.detail));
    this.showUnread();
  }

  showChat(open) {
    $('chat').hidden = !open;
    $('call-area').classList.toggle('with-chat', open);
    $('chat-toggle').setAttribute('aria-expanded', String(open));
    if (open) {
      this.unread = 0;
      this.showUnread();
      $('chat-input').focus();
      const list = $('chat-messages');
      list.scrollTop = list.scrollHeight;
    }
  }

  showUnread() {
    const badge = $('chat-unread');
    badge.textContent = this.unread > 0 ? String(this.unread) : '';
    badge.hidden = this.unread === 0;
    $('chat-toggle').setAttribute('aria-label', this.unread > 0
      ? t('Chat (%(count)s unread)', { count: this.unread })
      : t('Chat'));
  }

  chatError(message) {
    const input = $('chat-input');
    $('chat-error').textContent = message;
    if (message) input.setAttribute('aria-invalid', 'true');
    else input.removeAttribute('aria-invalid');
  }

  send() {
    const input = $('chat-input');
    const text = input.value;
    const result = this.session.sendChat(text);
    if (result === 'empty') return;
    if (result === 'too-long') {
      const kb = Math.ceil(utf8Bytes(text) / 1024);
      this.chatError(t('This message is too long (%(size)s KB). A message can be at most 4 KB: please shorten it or send it in parts.', { size: kb }));
      input.focus();
      return;
    }
    if (result === 'not-connected') {
      this.chatError(t('The message was not sent: %(name)s is not connected right now. Please try again in a moment.', { name: this.peerLabel }));
      return;
    }
    this.chatError('');
    input.value = '';
    this.add(text, new Date(), true);
  }

  received({ text, at }) {
    this.add(text, at, false);
    if ($('chat').hidden) {
      this.unread += 1;
      this.showUnread();
      this.announce(t('New message from %(name)s', { name: this.peerLabel }));
    }
  }

  add(text, at, mine) {
    const list = $('chat-messages');
    const item = document.createElement('li');
    item.className = mine ? 'mine' : 'theirs';
    const head = document.createElement('div');
    head.className = 'chat-meta';
    const who = document.createElement('span');
    who.className = 'chat-sender';
    who.textContent = mine ? t('You') : this.peerLabel;
    const time = document.createElement('time');
    time.dateTime = at.toISOString();
    time.textContent = formatTime(at);
    head.append(who, ' ', time);
    const body = document.createElement('p');
    body.className = 'chat-text';
    body.textContent = text;
    item.append(head, body);
    list.append(item);
    $('chat-empty').hidden = true;
    list.scrollTop = list.scrollHeight;
  }

  /** The call is over: its messages go with it. */
  clearChat() {
    $('chat-messages').replaceChildren();
    $('chat-empty').hidden = false;
    $('chat-input').value = '';
    this.unread = 0;
    this.showUnread();
    this.showChat(false);
    if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
  }
}
