// The visitor's page: device check → waiting room → call → ended.
// The page's state is in <main data-state="…"> (check | waiting | call | ended | error)
// and the connection's in data-connection.
import { CallSession, Log, formatDuration, getLocalMedia, playTestTone, playVideo, watchLevel } from './call.js';
import { CallControls } from './call-ui.js';
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

// call.js reports its problems in the page's language already (its t() messages).
const plain = (message, otherwise) => message || otherwise;

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
      new: t('Connecting to the expert…'),
      connecting: t('Connecting to the expert…'),
      connected: t('Connected · end-to-end encrypted'),
      disconnected: t('The connection is unstable; trying to keep the call…'),
      failed: t('The connection failed; trying again…'),
      closed: t('Disconnected'),
    }[state] || t('Connecting to the expert…');
    $('call-status').textContent = text;
    $('overlay').textContent = state === 'connected' ? '' : text;
    if (state === 'connected' && !timer) {
      timer = setInterval(() => {
        const seconds = (Date.now() - session.connectedAt) / 1000;
        $('call-status').textContent = t('Connected · end-to-end encrypted · %(duration)s', { duration: formatDuration(seconds) });
      }, 1000);
    }
  },
  onSocket: (open) => {
    const check = $('check-connection');
    check.textContent = open ? t('✓ Connected') : t('Reconnecting…');
    check.className = open ? 'ok' : 'warn';
    $('waiting-connection').textContent = open ? '' : t('The connection was lost. Reconnecting…');
  },
  // call.js says something here only when it helps the visitor (the call cannot connect
  // right now), in plain words; the service's own notice about its setup is never shown.
  onNotice: (text) => { $('notice').textContent = text; },
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

// In the call: mute, camera, sharing, devices, full screen, what the expert is doing,
// and the chat (tenants/static/call-ui.js, shared with the expert's page).
new CallControls(session, {
  expectedName: document.querySelector('section[data-step="call"]').dataset.expertName || null,
  peerFallback: t('The expert'),
});

session.connect();
checkDevices().catch((err) => log.add(`device check: ${err && err.message ? err.message : err}`, 'error'));
