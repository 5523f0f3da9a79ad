// The visitor's page: device check → waiting room → call → ended.
// The page's state is in <main data-state="…"> (check | waiting | call | ended | error)
// and the connection's in data-connection.
import { CallSession, Log, formatDuration, getLocalMedia, playTestTone, playVideo, watchLevel } from './call.js';
import { t } from '/static/i18n.js';

const main = document.querySelector('main');
const $ = (id) => document.getElementById(id);
const log = new Log($('log'));

let continued = false; // the visitor finished the device check
let left = false; // the visitor left the waiting room
let joinedAt = null; // when the expert let the visitor in
let stopLevel = () => {};
let timer = null;
let ownStream = null; // the visitor's camera and microphone, shown back to them while waiting

// What call.js reports in English, in the visitor's language (its known messages).
const PLAIN = {
  'No camera or microphone was found.': t('No camera or microphone was found.'),
  'This link is no longer valid. Please ask for a new one.': t('This link is no longer valid. Please ask for a new one.'),
  'This page may not connect from here.': t('This page cannot connect from here. Please open the link again.'),
};
const plain = (message, otherwise) => PLAIN[message] || otherwise;

function mediaProblem(media) {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    return t('This browser cannot use a camera or microphone on this page. Please open the link in another browser.');
  }
  if (media.camera === 'denied' || media.microphone === 'denied') {
    return t('Camera and microphone are blocked. Allow them in your browser (the icon in the address bar) and reload the page.');
  }
  return plain(media.error, t('The camera and microphone could not start. You can still join, but the expert will not see or hear you.'));
}

const session = new CallSession({
  path: main.dataset.wsPath,
  role: 'visitor',
  log,
  localVideo: $('local'),
  remoteVideo: $('remote'),
  onState: (state, message) => {
    if (state === 'waiting') show(continued ? 'waiting' : 'check');
    else if (state === 'call') enterCall();
    else if (state === 'ended') endCall();
    else if (state === 'error') {
      $('error-text').textContent = plain(message, t("Please reload the page. If it happens again, open the room's page and join again."));
      show('error');
    }
  },
  onConnection: (state) => {
    main.dataset.connection = state;
    const text = {
      new: 'Connecting to the expert…',
      connecting: 'Connecting to the expert…',
      connected: 'Connected · end-to-end encrypted',
      disconnected: 'The connection is unstable; trying to keep the call…',
      failed: 'The connection failed; trying again…',
      closed: 'Disconnected',
    }[state] || state;
    $('call-status').textContent = text;
    $('overlay').textContent = state === 'connected' ? '' : text;
    if (state === 'connected' && !timer) {
      timer = setInterval(() => {
        const seconds = (Date.now() - session.connectedAt) / 1000;
        $('call-status').textContent = `Connected · end-to-end encrypted · ${formatDuration(seconds)}`;
      }, 1000);
    }
  },
  onSocket: (open) => {
    const check = $('check-connection');
    check.textContent = open ? t('✓ Connected') : t('Reconnecting…');
    check.className = open ? 'ok' : 'warn';
    $('waiting-connection').textContent = open ? '' : t('The connection was lost. Reconnecting…');
  },
  // The service's notices are about its setup (relays), for support: kept in the
  // technical details, never shown to the visitor as a message.
  onNotice: (text) => log.add(text),
  onSoundBlocked: () => { $('sound-on').hidden = false; },
  onScreenShare: (active) => pressed($('share'), active, 'Stop sharing', 'Share screen'),
});

function show(step) {
  if (main.dataset.state === step) return;
  main.dataset.state = step;
  for (const section of document.querySelectorAll('section[data-step]')) {
    section.hidden = section.dataset.step !== step;
  }
  if (step === 'waiting') showSelf();
  else $('self-view').srcObject = null;
  const heading = document.querySelector(`section[data-step="${step}"] h1`);
  if (heading) heading.focus({ preventScroll: true });
}

// The waiting room shows the visitor their own camera, as the device check did.
function showSelf() {
  const video = $('self-view');
  const hasVideo = !!ownStream && ownStream.getVideoTracks().length > 0;
  $('self-view-caption').textContent = hasVideo
    ? t('This is how the expert will see you.')
    : t('Your camera is not on. The expert will only hear you.');
  if (!hasVideo) return;
  if (video.srcObject !== ownStream) video.srcObject = ownStream;
  playVideo(video);
}

function pressed(button, on, onText, offText) {
  button.setAttribute('aria-pressed', String(on));
  button.textContent = on ? onText : offText;
}

function enterCall() {
  stopLevel();
  joinedAt = joinedAt || Date.now();
  show('call');
  $('share').hidden = !CallSession.canShareScreen();
}

function endCall() {
  stopLevel();
  if (timer) clearInterval(timer);
  if (joinedAt) {
    const seconds = (Date.now() - joinedAt) / 1000;
    $('ended-text').textContent = t('The call lasted %(duration)s. Thank you. You can close this page now.', {
      duration: formatDuration(seconds),
    });
  } else if (left) {
    $('ended-text').textContent = t('You left the waiting room. You can close this page now.');
  }
  show('ended');
}

async function checkDevices() {
  const media = await getLocalMedia();
  const camera = $('check-camera');
  const microphone = $('check-microphone');
  const hasVideo = !!media.stream && media.stream.getVideoTracks().length > 0;
  const hasAudio = !!media.stream && media.stream.getAudioTracks().length > 0;
  camera.textContent = hasVideo ? t('✓ Working') : media.camera === 'denied' ? t('✗ Blocked') : t('✗ Not available');
  camera.className = hasVideo ? 'ok' : 'bad';
  microphone.textContent = hasAudio
    ? t('✓ Working. Speak to see the level.')
    : media.microphone === 'denied' ? t('✗ Blocked') : t('✗ Not available');
  microphone.className = hasAudio ? 'ok small' : 'bad small';
  if (media.error) {
    $('media-error').textContent = mediaProblem(media);
  } else if (!hasVideo || !hasAudio) {
    $('media-error').textContent = hasVideo
      ? t('You can still join, but the expert will not hear you.')
      : hasAudio ? t('You can still join, but the expert will not see you.')
        : t('You can still join, but the expert will not see or hear you.');
  }
  session.action('camera_permission', media.camera);
  session.action('microphone_permission', media.microphone);
  for (const [kind, status] of Object.entries(media.statuses)) {
    status.addEventListener('change', () => session.action(`${kind}_permission`, status.state));
  }
  if (media.stream) {
    ownStream = media.stream;
    if (main.dataset.state === 'waiting') showSelf();
    const preview = $('preview');
    preview.srcObject = media.stream;
    playVideo(preview);
    stopLevel = watchLevel(media.stream, (level) => { $('mic-level').value = level; });
    await session.setLocalStream(media.stream);
    if (session.localVideo) playVideo(session.localVideo);
  }
}

$('speaker-test').addEventListener('click', () => {
  $('check-speakers').textContent = playTestTone()
    ? t('Did you hear two tones? If not, check the volume.')
    : t('This browser cannot play a test sound.');
});

$('continue').addEventListener('click', () => {
  continued = true;
  stopLevel();
  if (main.dataset.state === 'check') show('waiting');
});

$('leave').addEventListener('click', () => {
  left = true;
  session.hangup();
});
$('hangup').addEventListener('click', () => session.hangup());

$('mute').addEventListener('click', (event) => {
  session.setMuted(!session.muted);
  pressed(event.currentTarget, session.muted, 'Unmute', 'Mute');
});

$('camera').addEventListener('click', (event) => {
  session.setCameraOff(!session.cameraOff);
  pressed(event.currentTarget, session.cameraOff, 'Camera on', 'Camera off');
});

$('share').addEventListener('click', async () => {
  if (session.screenTrack) await session.stopScreenShare();
  else await session.startScreenShare();
});

$('sound-on').addEventListener('click', (event) => {
  const remote = $('remote');
  remote.muted = false;
  playVideo(remote);
  event.currentTarget.hidden = true;
});

session.connect();
checkDevices().catch((err) => log.add(`device check: ${err && err.message ? err.message : err}`, 'error'));
