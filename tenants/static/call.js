// Konsil call module, shared by the visitor's page and the expert's call page:
// the signaling socket, the peer connection (DTLS-SRTP, through the region's TURN
// relays when the organisation asks for relay-only), in-call controls, and the
// troubleshooting telemetry the server stores per call (P5). No third parties.
//
// Signaling rule (tenants/signaling.py): whoever receives a "hello" from the peer
// answers "present"; the visitor makes the offer when it hears "hello" or "present"
// from the expert (once; again when the expert re-joins); the expert answers.
//
// The peer connection also carries a data channel between the two browsers (DTLS, end
// to end): each side's state (muted, camera off, sharing, its name) and the in-call
// chat. Nothing of it passes through or is kept by the server; it ends with the call.
import { t } from '/static/i18n.js';
import { rememberedDevice } from './device-memory.js';

const TELEMETRY_SECONDS = 5;
// A chat message is at most 4 KB of UTF-8 text; bigger ones are refused when sent and
// ignored when received. A channel message (JSON) bigger than this is ignored unread.
export const CHAT_MAX_BYTES = 4096;
const CHANNEL_MAX_CHARS = 32 * 1024;
const NAME_MAX_CHARS = 200;

export function utf8Bytes(text) {
  return new TextEncoder().encode(text).length;
}

export function wsUrl(path) {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}${path}`;
}

export function formatDuration(totalSeconds) {
  const s = Math.max(0, Math.floor(totalSeconds || 0));
  const pad = (n) => String(n).padStart(2, '0');
  return `${pad(Math.floor(s / 3600))}:${pad(Math.floor((s % 3600) / 60))}:${pad(s % 60)}`;
}

/** The technical log shown in a collapsed "Technical details" area. */
export class Log {
  constructor(list, limit = 80) {
    this.list = list;
    this.limit = limit;
  }

  add(text, level = 'info') {
    const time = new Date().toLocaleTimeString([], { hour12: false });
    if (level === 'error') console.warn(`[konsil] ${text}`);
    if (!this.list) return;
    const item = document.createElement('li');
    item.textContent = `${time} ${text}`;
    if (level === 'error') item.className = 'error';
    this.list.append(item);
    while (this.list.children.length > this.limit) this.list.firstElementChild.remove();
    this.list.scrollTop = this.list.scrollHeight;
  }
}

async function permissionState(name) {
  try {
    const status = await navigator.permissions.query({ name });
    return status;
  } catch {
    return null; // not every browser can query camera/microphone permissions
  }
}

/**
 * Ask for the camera and microphone. Resolves to
 * { stream, camera, microphone, error } where camera/microphone are
 * "granted" | "denied" | "prompt" | null, and stream may lack either kind.
 */
export async function getLocalMedia() {
  const result = { stream: null, camera: null, microphone: null, error: null, statuses: {} };
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    result.error = t('This browser cannot use a camera or microphone on this page. Please open the link in an up-to-date browser.');
    return result;
  }
  // The camera and microphone the visitor chose last time, if they asked this browser to
  // remember it (device-memory.js); "ideal", so a device that is gone does not fail.
  const camera = rememberedDevice('video');
  const microphone = rememberedDevice('audio');
  const video = { width: { ideal: 1280 }, height: { ideal: 720 }, ...(camera ? { deviceId: { ideal: camera } } : {}) };
  const audio = microphone ? { deviceId: { ideal: microphone } } : true;
  const attempts = [{ audio, video }, { audio, video: false }, { audio: false, video }];
  let lastError = null;
  for (const constraints of attempts) {
    try {
      result.stream = await navigator.mediaDevices.getUserMedia(constraints);
      break;
    } catch (err) {
      lastError = err;
      if (err && err.name === 'NotAllowedError') break; // the user said no: do not ask again
    }
  }
  const hasVideo = !!result.stream && result.stream.getVideoTracks().length > 0;
  const hasAudio = !!result.stream && result.stream.getAudioTracks().length > 0;
  for (const [kind, has] of [['camera', hasVideo], ['microphone', hasAudio]]) {
    const status = await permissionState(kind);
    if (status) result.statuses[kind] = status;
    if (status && ['granted', 'denied', 'prompt'].includes(status.state)) result[kind] = status.state;
    else if (has) result[kind] = 'granted';
    else if (lastError && lastError.name === 'NotAllowedError') result[kind] = 'denied';
  }
  if (!result.stream && lastError) {
    result.error = lastError.name === 'NotAllowedError'
      ? t('Camera and microphone are blocked. Allow them in your browser (the icon in the address bar) and reload the page.')
      : lastError.name === 'NotFoundError'
        ? t('No camera or microphone was found.')
        : t('The camera and microphone could not start. Close other programs that use them and reload the page.');
  }
  return result;
}

/** A short test tone, so the visitor knows the speakers work. */
export function playTestTone(seconds = 1.2) {
  const AudioCtx = window.AudioContext || window.webkitAudioContext;
  if (!AudioCtx) return false;
  const ctx = new AudioCtx();
  const gain = ctx.createGain();
  gain.gain.setValueAtTime(0.0001, ctx.currentTime);
  gain.gain.exponentialRampToValueAtTime(0.2, ctx.currentTime + 0.05);
  gain.gain.exponentialRampToValueAtTime(0.0001, ctx.currentTime + seconds);
  gain.connect(ctx.destination);
  for (const [freq, start] of [[660, 0], [880, seconds / 2]]) {
    const osc = ctx.createOscillator();
    osc.frequency.value = freq;
    osc.connect(gain);
    osc.start(ctx.currentTime + start);
    osc.stop(ctx.currentTime + Math.min(seconds, start + seconds / 2));
  }
  setTimeout(() => ctx.close().catch(() => {}), (seconds + 0.3) * 1000);
  return true;
}

/** A live microphone level (0..1) for the device check; returns a stop function. */
export function watchLevel(stream, onLevel) {
  const AudioCtx = window.AudioContext || window.webkitAudioContext;
  if (!AudioCtx || !stream || stream.getAudioTracks().length === 0) return () => {};
  const ctx = new AudioCtx();
  const source = ctx.createMediaStreamSource(stream);
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 512;
  source.connect(analyser);
  const data = new Uint8Array(analyser.fftSize);
  let running = true;
  const tick = () => {
    if (!running) return;
    analyser.getByteTimeDomainData(data);
    let peak = 0;
    for (const v of data) peak = Math.max(peak, Math.abs(v - 128));
    onLevel(Math.min(1, peak / 64));
    setTimeout(tick, 100);
  };
  tick();
  return () => {
    if (!running) return;
    running = false;
    ctx.close().catch(() => {});
  };
}

function fingerprint(sdp) {
  const match = /a=fingerprint:(\S+ \S+)/.exec(sdp || '');
  return match ? match[1] : null;
}

function clamp(value, low, high) {
  if (value === null || value === undefined || !Number.isFinite(value)) return null;
  return Math.round(Math.min(high, Math.max(low, value)) * 100) / 100;
}

/** Play a media element; if the browser blocks sound, play muted and report it. */
export async function playVideo(video, onBlocked) {
  try {
    await video.play();
  } catch (err) {
    if (err && err.name === 'NotAllowedError' && !video.muted) {
      video.muted = true;
      try { await video.play(); } catch { /* nothing more to try */ }
      if (onBlocked) onBlocked();
    }
  }
}

/**
 * One participant's side of a call.
 *
 * options: path (WebSocket path), role ("visitor" | "expert"), log (Log),
 * localVideo, remoteVideo (video elements), name (this side's name, told to the
 * other side over the data channel; optional), and callbacks:
 * onState(state) with "connecting" | "waiting" | "call" | "ended" | "error",
 * onConnection(state) with the peer connection's state,
 * onSocket(open: boolean), onNotice(text), onSoundBlocked(), onScreenShare(active).
 *
 * It is also an EventTarget, for the in-call controls (tenants/static/call-ui.js):
 * "peer-state" (detail: the other side's state, or null when unknown), "chat" (detail:
 * { text, at }), "channel" (detail: { open }), "local-media", "screen-share" (detail:
 * { active }), "sound-blocked" and "finished".
 */
export class CallSession extends EventTarget {
  constructor(options) {
    super();
    this.path = options.path;
    this.role = options.role;
    this.log = options.log || new Log(null);
    this.localVideo = options.localVideo || null;
    this.remoteVideo = options.remoteVideo || null;
    this.on = {
      state: options.onState || (() => {}),
      connection: options.onConnection || (() => {}),
      socket: options.onSocket || (() => {}),
      notice: options.onNotice || (() => {}),
      soundBlocked: options.onSoundBlocked || (() => {}),
      screenShare: options.onScreenShare || (() => {}),
    };
    this.ws = null;
    this.pc = null;
    this.joined = null;
    this.finished = false;
    this.retries = 0;
    this.offered = false;
    this.pendingIce = [];
    this.queuedActions = [];
    this.stream = null; // camera + microphone
    this.screenTrack = null;
    this.muted = false;
    this.cameraOff = false;
    this.name = options.name ? String(options.name).slice(0, NAME_MAX_CHARS) : null;
    this.channel = null; // the data channel to the other browser
    this.peerState = null; // what the other side last told about itself
    this.telemetryTimer = null;
    this.previousSample = null;
    this.connectedAt = null;
  }

  // --- socket ---------------------------------------------------------------------------

  connect() {
    if (this.finished) return;
    const ws = new WebSocket(wsUrl(this.path));
    this.ws = ws;
    ws.addEventListener('open', () => {
      this.retries = 0;
      this.log.add('signaling connected');
      this.on.socket(true);
    });
    ws.addEventListener('message', (event) => this.receive(event.data));
    ws.addEventListener('close', (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.on.socket(false);
      if (this.finished) return;
      if (event.code === 4404 || event.code === 4403) {
        this.log.add(`signaling refused: ${event.reason || event.code}`, 'error');
        this.fail(event.code === 4404
          ? t('This link is no longer valid. Please ask for a new one.')
          : t('This page cannot connect to the call. Please open the link you were given again.'));
        return;
      }
      const delay = Math.min(10000, 500 * 2 ** this.retries++);
      this.log.add(`signaling closed (${event.code}); reconnecting in ${Math.round(delay / 100) / 10} s`);
      setTimeout(() => this.connect(), delay);
    });
  }

  emit(type, detail = null) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  get socketOpen() {
    return !!this.ws && this.ws.readyState === WebSocket.OPEN;
  }

  send(message) {
    if (!this.socketOpen) return false;
    this.ws.send(JSON.stringify(message));
    return true;
  }

  async receive(raw) {
    let msg;
    try {
      msg = JSON.parse(raw);
    } catch {
      return;
    }
    try {
      await this.handle(msg);
    } catch (err) {
      this.log.add(`could not handle "${msg.type}": ${err && err.message ? err.message : err}`, 'error');
    }
  }

  async handle(msg) {
    const fromPeer = msg.from && msg.from !== this.role && msg.from !== 'server';
    switch (msg.type) {
      case 'waiting':
        this.on.state('waiting');
        break;
      case 'joined':
        this.onJoined(msg);
        break;
      case 'hello':
        if (!fromPeer) break;
        this.log.add(`${msg.from} joined`);
        this.send({ type: 'present' });
        if (this.role === 'visitor') {
          if (this.offered) this.newPeer(); // the expert re-joined with a new connection
          await this.offer();
        } else if (this.pc && this.pc.remoteDescription) {
          this.newPeer(); // the visitor re-joined; a fresh offer follows
        }
        break;
      case 'present':
        if (fromPeer && this.role === 'visitor' && !this.offered) await this.offer();
        break;
      case 'offer':
        if (fromPeer && this.role === 'expert') await this.onOffer(msg.sdp);
        break;
      case 'answer':
        if (fromPeer && this.role === 'visitor') await this.onAnswer(msg.sdp);
        break;
      case 'ice':
        if (fromPeer) await this.onIce(msg);
        break;
      case 'ended':
        this.finish();
        break;
      case 'error':
        this.log.add(`server: ${msg.message}`, 'error');
        break;
      default:
        break;
    }
  }

  // --- peer connection ------------------------------------------------------------------

  onJoined(msg) {
    this.joined = msg;
    this.log.add(`joined call ${msg.call_id} as ${msg.role}; ${msg.relay_only ? 'relay only' : 'direct or relay'}`);
    // The server's notice is for operators; people only hear of it when the call cannot
    // connect (it must go through a relay and none is available right now).
    const relays = (msg.ice_servers || []).some((server) => [].concat(server.urls || []).some((url) => /^turns?:/.test(url)));
    if (msg.relay_only && !relays) {
      this.log.add('no relay available for this call', 'error');
      this.on.notice(t('The call cannot connect right now. Please reload the page in a minute to try again.'));
    } else {
      this.on.notice('');
    }
    this.newPeer();
    this.on.state('call');
    for (const action of this.queuedActions.splice(0)) this.send(action);
    this.startTelemetry();
  }

  newPeer() {
    if (this.pc) {
      this.pc.onicecandidate = null;
      this.pc.ontrack = null;
      this.pc.onconnectionstatechange = null;
      this.pc.close();
    }
    if (this.channel) this.channel.close();
    this.channel = null;
    if (this.peerState) {
      this.peerState = null; // a new connection: the other side tells its state again
      this.emit('peer-state', null);
    }
    const pc = new RTCPeerConnection({
      iceServers: this.joined.ice_servers || [],
      iceTransportPolicy: this.joined.relay_only ? 'relay' : 'all',
    });
    this.pc = pc;
    this.offered = false;
    this.pendingIce = [];
    this.previousSample = null;
    this.remoteStream = new MediaStream();
    if (this.remoteVideo) this.remoteVideo.srcObject = this.remoteStream;
    pc.onicecandidate = (event) => {
      if (pc !== this.pc || !event.candidate || !event.candidate.candidate) return;
      this.send({
        type: 'ice',
        candidate: event.candidate.candidate,
        sdpMid: event.candidate.sdpMid,
        sdpMLineIndex: event.candidate.sdpMLineIndex,
      });
    };
    pc.ontrack = (event) => {
      if (pc !== this.pc) return;
      this.remoteStream.addTrack(event.track);
      if (this.remoteVideo) playVideo(this.remoteVideo, () => this.soundBlocked());
    };
    pc.onconnectionstatechange = () => {
      if (pc !== this.pc) return;
      const state = pc.connectionState;
      this.log.add(`connection ${state}`);
      if (state === 'connected' && !this.connectedAt) this.connectedAt = Date.now();
      if (state === 'connected') setTimeout(() => this.sample(), 1000);
      if (state === 'failed' && this.role === 'visitor') this.restartIce();
      this.on.connection(state);
    };
    if (this.role === 'visitor') {
      // The offerer decides the media sections: audio and video both ways, even
      // without a camera or microphone, so the visitor still sees and hears the expert.
      for (const kind of ['audio', 'video']) {
        const track = this.localTrack(kind);
        if (track) pc.addTransceiver(track, { direction: 'sendrecv', streams: [this.stream] });
        else pc.addTransceiver(kind, { direction: 'sendrecv' });
      }
    }
    // Both sides make the same pre-agreed channel (id 0); the visitor's offer carries it.
    this.openChannel(pc.createDataChannel('konsil', { negotiated: true, id: 0, ordered: true }));
    this.on.connection('new');
  }

  localTrack(kind) {
    if (kind === 'video' && this.screenTrack) return this.screenTrack;
    if (!this.stream) return null;
    return (kind === 'audio' ? this.stream.getAudioTracks() : this.stream.getVideoTracks())[0] || null;
  }

  sender(kind) {
    if (!this.pc) return null;
    const transceiver = this.pc.getTransceivers().find((t) => t.receiver.track && t.receiver.track.kind === kind);
    return transceiver ? transceiver.sender : null;
  }

  async attachTracks() {
    for (const kind of ['audio', 'video']) {
      const sender = this.sender(kind);
      const track = this.localTrack(kind);
      if (sender && track && sender.track !== track) await sender.replaceTrack(track);
    }
  }

  async offer(options = {}) {
    const pc = this.pc;
    if (!pc) return;
    this.offered = true;
    const offer = await pc.createOffer(options);
    if (pc !== this.pc) return;
    await pc.setLocalDescription(offer);
    this.send({ type: 'offer', sdp: pc.localDescription.sdp });
    this.log.add(options.iceRestart ? 'sent offer (ICE restart)' : 'sent offer');
  }

  async restartIce() {
    if (!this.pc || this.pc.signalingState !== 'stable') return;
    this.log.add('connection failed; trying again', 'error');
    await this.offer({ iceRestart: true });
  }

  async onOffer(sdp) {
    // A different DTLS fingerprint means a new peer connection on the visitor's
    // side (a reload): start afresh. The same one is a renegotiation (ICE restart).
    if (this.pc && this.pc.remoteDescription && fingerprint(this.pc.remoteDescription.sdp) !== fingerprint(sdp)) {
      this.newPeer();
    }
    const pc = this.pc;
    await pc.setRemoteDescription({ type: 'offer', sdp });
    for (const transceiver of pc.getTransceivers()) {
      const kind = transceiver.receiver.track && transceiver.receiver.track.kind;
      const track = this.localTrack(kind);
      if (track && transceiver.sender.track !== track) await transceiver.sender.replaceTrack(track);
      if (this.stream && transceiver.sender.setStreams) transceiver.sender.setStreams(this.stream);
      transceiver.direction = 'sendrecv';
    }
    const answer = await pc.createAnswer();
    if (pc !== this.pc) return;
    await pc.setLocalDescription(answer);
    this.send({ type: 'answer', sdp: pc.localDescription.sdp });
    this.log.add('sent answer');
    await this.flushIce();
  }

  async onAnswer(sdp) {
    const pc = this.pc;
    if (!pc || pc.signalingState !== 'have-local-offer') {
      this.log.add('ignored an answer to an older offer');
      return;
    }
    await pc.setRemoteDescription({ type: 'answer', sdp });
    this.log.add('got answer');
    await this.flushIce();
  }

  async onIce(msg) {
    const candidate = { candidate: msg.candidate, sdpMid: msg.sdpMid, sdpMLineIndex: msg.sdpMLineIndex };
    if (!this.pc || !this.pc.remoteDescription) {
      this.pendingIce.push(candidate);
      return;
    }
    await this.addIce(candidate);
  }

  async flushIce() {
    for (const candidate of this.pendingIce.splice(0)) await this.addIce(candidate);
  }

  async addIce(candidate) {
    try {
      await this.pc.addIceCandidate(candidate);
    } catch (err) {
      this.log.add(`skipped a network candidate (${err && err.name ? err.name : 'error'})`);
    }
  }

  // --- media and in-call actions --------------------------------------------------------

  /** Use this camera/microphone stream (again): after the device check or a late permission. */
  async setLocalStream(stream) {
    this.stream = stream;
    if (stream) {
      const audio = stream.getAudioTracks()[0];
      const video = stream.getVideoTracks()[0];
      if (audio) audio.enabled = !this.muted;
      if (video) video.enabled = !this.cameraOff;
    }
    if (this.localVideo && !this.screenTrack) this.localVideo.srcObject = stream;
    await this.attachTracks();
    this.sendState();
    this.emit('local-media');
  }

  /** Record an in-call action (sent when in the call; earlier ones wait until then). */
  action(action, state = null) {
    const message = { type: 'action', action, state };
    if (this.joined && this.socketOpen) this.send(message);
    else this.queuedActions.push(message);
  }

  setMuted(muted) {
    this.muted = muted;
    for (const track of this.stream ? this.stream.getAudioTracks() : []) track.enabled = !muted;
    this.action(muted ? 'mute' : 'unmute');
    this.sendState();
  }

  setCameraOff(off) {
    this.cameraOff = off;
    for (const track of this.stream ? this.stream.getVideoTracks() : []) track.enabled = !off;
    this.action(off ? 'camera_off' : 'camera_on');
    this.sendState();
  }

  static canShareScreen() {
    return !!(navigator.mediaDevices && navigator.mediaDevices.getDisplayMedia);
  }

  async startScreenShare() {
    if (this.screenTrack) return true;
    let display;
    try {
      display = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
    } catch (err) {
      this.log.add(`screen sharing not started (${err && err.name ? err.name : 'error'})`);
      return false;
    }
    const track = display.getVideoTracks()[0];
    if (!track) return false;
    this.screenTrack = track;
    track.addEventListener('ended', () => this.stopScreenShare());
    if (this.localVideo) {
      this.localVideo.srcObject = display;
      this.localVideo.classList.remove('mirror');
    }
    await this.attachTracks();
    this.action('screen_share_start');
    this.on.screenShare(true);
    this.emit('screen-share', { active: true });
    this.sendState();
    return true;
  }

  async stopScreenShare() {
    const track = this.screenTrack;
    if (!track) return;
    this.screenTrack = null;
    track.stop();
    const sender = this.sender('video');
    const camera = this.localTrack('video');
    if (sender) await sender.replaceTrack(camera);
    if (this.localVideo) {
      this.localVideo.srcObject = this.stream;
      this.localVideo.classList.add('mirror');
    }
    this.action('screen_share_stop');
    this.on.screenShare(false);
    this.emit('screen-share', { active: false });
    this.sendState();
  }

  soundBlocked() {
    this.on.soundBlocked();
    this.emit('sound-blocked');
  }

  // --- cameras and microphones ----------------------------------------------------------

  /** The cameras and microphones the browser offers (labels only once permission is given). */
  static async devices() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) return { video: [], audio: [] };
    const all = await navigator.mediaDevices.enumerateDevices();
    return {
      video: all.filter((d) => d.kind === 'videoinput' && d.deviceId),
      audio: all.filter((d) => d.kind === 'audioinput' && d.deviceId),
    };
  }

  /** The camera's or microphone's own track (not the shared screen). */
  deviceTrack(kind) {
    if (!this.stream) return null;
    return (kind === 'audio' ? this.stream.getAudioTracks() : this.stream.getVideoTracks())[0] || null;
  }

  deviceInUse(kind) {
    const track = this.deviceTrack(kind);
    return track && track.getSettings ? track.getSettings().deviceId || null : null;
  }

  /**
   * Switch to another camera ("video") or microphone ("audio"): the new track replaces
   * the old one in the call (RTCRtpSender.replaceTrack, no renegotiation). Throws when
   * the device cannot start; the old one is then kept (or opened again).
   */
  async useDevice(kind, deviceId) {
    const media = (id) => (kind === 'video'
      ? { video: { deviceId: { exact: id }, width: { ideal: 1280 }, height: { ideal: 720 } } }
      : { audio: { deviceId: { exact: id } } });
    const old = this.deviceTrack(kind);
    const oldId = this.deviceInUse(kind);
    if (old && oldId === deviceId) return old;
    let fresh;
    try {
      fresh = await navigator.mediaDevices.getUserMedia(media(deviceId));
    } catch (err) {
      if (!old) throw err;
      old.stop(); // some devices open only once: free the old one and try again
      try {
        fresh = await navigator.mediaDevices.getUserMedia(media(deviceId));
      } catch (again) {
        this.log.add(`could not switch ${kind} (${again && again.name ? again.name : 'error'})`, 'error');
        if (oldId) fresh = await navigator.mediaDevices.getUserMedia(media(oldId)).catch(() => null);
        if (fresh) await this.putTrack(kind, old, fresh);
        throw again;
      }
    }
    return this.putTrack(kind, old, fresh);
  }

  async putTrack(kind, old, fresh) {
    const track = (kind === 'video' ? fresh.getVideoTracks() : fresh.getAudioTracks())[0];
    track.enabled = kind === 'video' ? !this.cameraOff : !this.muted;
    if (!this.stream) this.stream = new MediaStream();
    if (old) {
      this.stream.removeTrack(old);
      old.stop();
    }
    this.stream.addTrack(track);
    if (kind === 'video' && this.localVideo && !this.screenTrack) {
      this.localVideo.srcObject = this.stream;
      playVideo(this.localVideo);
    }
    await this.attachTracks();
    this.log.add(`switched ${kind === 'video' ? 'camera' : 'microphone'}`);
    this.sendState();
    this.emit('local-media');
    return track;
  }

  // --- the data channel: state and chat, browser to browser ------------------------------

  openChannel(channel) {
    this.channel = channel;
    channel.addEventListener('open', () => {
      if (channel !== this.channel) return;
      this.log.add('chat and status channel open');
      this.sendState();
      this.emit('channel', { open: true });
    });
    channel.addEventListener('close', () => {
      if (channel !== this.channel) return;
      this.emit('channel', { open: false });
    });
    channel.addEventListener('message', (event) => {
      if (channel === this.channel) this.onChannelMessage(event.data);
    });
  }

  get channelOpen() {
    return !!this.channel && this.channel.readyState === 'open';
  }

  /** This side's state, for the other side's indicators. */
  sendState() {
    if (!this.channelOpen) return;
    this.channel.send(JSON.stringify({
      type: 'state',
      name: this.name,
      muted: this.muted,
      cameraOff: this.cameraOff,
      sharing: !!this.screenTrack,
      camera: !!this.deviceTrack('video'),
      microphone: !!this.deviceTrack('audio'),
    }));
  }

  /**
   * Send a chat message straight to the other browser. Returns "sent", "empty",
   * "too-long" (over CHAT_MAX_BYTES of UTF-8) or "not-connected".
   */
  sendChat(text) {
    if (!text || !text.trim()) return 'empty';
    if (utf8Bytes(text) > CHAT_MAX_BYTES) return 'too-long';
    if (!this.channelOpen) return 'not-connected';
    this.channel.send(JSON.stringify({ type: 'chat', text }));
    return 'sent';
  }

  onChannelMessage(data) {
    if (typeof data !== 'string' || data.length > CHANNEL_MAX_CHARS) {
      this.log.add('ignored a message from the other side that was too large');
      return;
    }
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return;
    }
    if (!msg || typeof msg !== 'object') return;
    if (msg.type === 'chat') {
      if (typeof msg.text !== 'string' || !msg.text.trim()) return;
      if (utf8Bytes(msg.text) > CHAT_MAX_BYTES) {
        this.log.add('ignored a chat message over 4 KB');
        return;
      }
      this.emit('chat', { text: msg.text, at: new Date() });
    } else if (msg.type === 'state') {
      const name = typeof msg.name === 'string' && msg.name.trim() ? msg.name.trim().slice(0, NAME_MAX_CHARS) : null;
      this.peerState = {
        name,
        muted: msg.muted === true,
        cameraOff: msg.cameraOff === true,
        sharing: msg.sharing === true,
        camera: msg.camera !== false,
        microphone: msg.microphone !== false,
      };
      this.emit('peer-state', this.peerState);
    }
  }

  // --- telemetry ------------------------------------------------------------------------

  startTelemetry() {
    if (this.telemetryTimer) return;
    this.telemetryTimer = setInterval(() => this.sample(), TELEMETRY_SECONDS * 1000);
  }

  /** One network-quality sample from getStats, sent to the server. */
  async sample() {
    const pc = this.pc;
    if (!pc || pc.connectionState !== 'connected' || !this.socketOpen) return null;
    const stats = await pc.getStats();
    let pairId = null;
    stats.forEach((s) => {
      if (s.type === 'transport' && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
    });
    let rtt = null;
    let jitter = null;
    let lost = 0;
    let received = 0;
    let bytes = 0;
    stats.forEach((s) => {
      if (s.type === 'candidate-pair') {
        const selected = pairId ? s.id === pairId : (s.selected || (s.nominated && s.state === 'succeeded'));
        if (selected && typeof s.currentRoundTripTime === 'number') rtt = s.currentRoundTripTime * 1000;
      } else if (s.type === 'inbound-rtp') {
        if (typeof s.jitter === 'number') jitter = Math.max(jitter || 0, s.jitter * 1000);
        lost += Math.max(0, s.packetsLost || 0);
        received += s.packetsReceived || 0;
        bytes += s.bytesReceived || 0;
      }
    });
    const now = performance.now();
    const previous = this.previousSample;
    this.previousSample = { now, lost, received, bytes };
    let loss = null;
    let kbps = null;
    if (previous) {
      const dLost = lost - previous.lost;
      const dReceived = received - previous.received;
      if (dLost + dReceived > 0) loss = dLost / (dLost + dReceived);
      const seconds = (now - previous.now) / 1000;
      if (seconds > 0) kbps = ((bytes - previous.bytes) * 8) / 1000 / seconds;
    } else if (lost + received > 0) {
      loss = lost / (lost + received);
    }
    const sample = {
      type: 'quality',
      rtt_ms: clamp(rtt, 0, 600000),
      jitter_ms: clamp(jitter, 0, 600000),
      packet_loss: clamp(loss, 0, 1),
      bitrate_kbps: clamp(kbps, 0, 1000000),
    };
    if (pc === this.pc) this.send(sample);
    return sample;
  }

  // --- the end --------------------------------------------------------------------------

  /** Leave: in the waiting room this withdraws the visit; in a call it ends the call. */
  async hangup() {
    if (this.finished) return;
    await this.sample().catch(() => null);
    this.send({ type: 'hangup' });
    this.finish();
  }

  finish() {
    if (this.finished) return;
    this.finished = true;
    if (this.telemetryTimer) clearInterval(this.telemetryTimer);
    this.telemetryTimer = null;
    this.closeChannel();
    if (this.pc) this.pc.close();
    this.pc = null;
    this.stopMedia();
    if (this.remoteVideo) this.remoteVideo.srcObject = null;
    const ws = this.ws;
    this.ws = null;
    if (ws) setTimeout(() => ws.close(1000), 200); // let a last message go out first
    this.log.add('call ended');
    this.emit('finished');
    this.on.state('ended');
  }

  fail(message) {
    this.finished = true;
    if (this.telemetryTimer) clearInterval(this.telemetryTimer);
    this.closeChannel();
    if (this.pc) this.pc.close();
    this.pc = null;
    this.stopMedia();
    this.emit('finished');
    this.on.state('error', message);
  }

  closeChannel() {
    if (this.channel) this.channel.close();
    this.channel = null;
    this.peerState = null;
  }

  stopMedia() {
    if (this.screenTrack) this.screenTrack.stop();
    this.screenTrack = null;
    for (const track of this.stream ? this.stream.getTracks() : []) track.stop();
    if (this.localVideo) this.localVideo.srcObject = null;
  }
}
