// Konsil call module, shared by the visitor's page and the expert's call page:
// the signaling socket, the peer connection (DTLS-SRTP, through the region's TURN
// relays when the organisation asks for relay-only), in-call controls, and the
// troubleshooting telemetry the server stores per call (P5). No third parties.
//
// Signaling rule (tenants/signaling.py): whoever receives a "hello" from the peer
// answers "present"; the visitor makes the offer when it hears "hello" or "present"
// from the expert (once; again when the expert re-joins); the expert answers.

const TELEMETRY_SECONDS = 5;

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
    result.error = 'This browser cannot use a camera or microphone here (a secure https page is needed).';
    return result;
  }
  const video = { width: { ideal: 1280 }, height: { ideal: 720 } };
  const attempts = [{ audio: true, video }, { audio: true, video: false }, { audio: false, video }];
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
      ? 'Camera and microphone are blocked. Allow them in your browser (the icon in the address bar) and reload the page.'
      : lastError.name === 'NotFoundError'
        ? 'No camera or microphone was found.'
        : `Camera and microphone could not start (${lastError.name || 'error'}).`;
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
 * localVideo, remoteVideo (video elements), and callbacks:
 * onState(state) with "connecting" | "waiting" | "call" | "ended" | "error",
 * onConnection(state) with the peer connection's state,
 * onSocket(open: boolean), onNotice(text), onSoundBlocked(), onScreenShare(active).
 */
export class CallSession {
  constructor(options) {
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
          ? 'This link is no longer valid. Please ask for a new one.'
          : 'This page may not connect from here.');
        return;
      }
      const delay = Math.min(10000, 500 * 2 ** this.retries++);
      this.log.add(`signaling closed (${event.code}); reconnecting in ${Math.round(delay / 100) / 10} s`);
      setTimeout(() => this.connect(), delay);
    });
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
    if (msg.notice) this.on.notice(msg.notice);
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
      if (this.remoteVideo) playVideo(this.remoteVideo, () => this.on.soundBlocked());
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
  }

  setCameraOff(off) {
    this.cameraOff = off;
    for (const track of this.stream ? this.stream.getVideoTracks() : []) track.enabled = !off;
    this.action(off ? 'camera_off' : 'camera_on');
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
    if (this.pc) this.pc.close();
    this.pc = null;
    this.stopMedia();
    if (this.remoteVideo) this.remoteVideo.srcObject = null;
    const ws = this.ws;
    this.ws = null;
    if (ws) setTimeout(() => ws.close(1000), 200); // let a last message go out first
    this.log.add('call ended');
    this.on.state('ended');
  }

  fail(message) {
    this.finished = true;
    if (this.telemetryTimer) clearInterval(this.telemetryTimer);
    if (this.pc) this.pc.close();
    this.pc = null;
    this.stopMedia();
    this.on.state('error', message);
  }

  stopMedia() {
    if (this.screenTrack) this.screenTrack.stop();
    this.screenTrack = null;
    for (const track of this.stream ? this.stream.getTracks() : []) track.stop();
    if (this.localVideo) this.localVideo.srcObject = null;
  }
}
