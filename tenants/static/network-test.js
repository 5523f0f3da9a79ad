// The pre-call network test on the visitor's device-check step: a test connection to
// a peer in the region service, through the region's relay only, once over UDP and
// once over TCP. The service measures round-trip time, jitter, loss and upload
// speed, stores them without any link to the visit, and sends back a verdict and advice.
// In a region without relays, where calls go direct, the relays answer says so (path
// "direct") and the direct path is measured once: a failure there is "not measured",
// never "cannot connect". A relay that is down is "unavailable": the service's fault.
//
// Signaling is plain HTTP and non-trickle: GET <base>/relays?transport=… for the ICE
// servers, gather the candidates, POST the offer to <base>, apply the answer.
// The channels are negotiated with fixed ids (media_nodes/network_test/peer.py).
// Visitors read plain words in their language: no protocol, relay or region names.
import { t, formatNumber } from '/static/i18n.js';

const PROBE_CHANNEL_ID = 1;
const BULK_CHANNEL_ID = 2;
const CHUNK_BYTES = 16 * 1024;
const MAX_BUFFERED = 1024 * 1024;
const GATHER_TIMEOUT_MS = 8000;
const RESULT_TIMEOUT_MS = 30000;
const GOOD_UPLOAD_KBPS = 1000; // media_nodes/network_test/service.py GOOD_THROUGHPUT_KBPS
const TRANSPORTS = [
  { id: 'udp', title: () => t('Usual connection') },
  { id: 'tcp', title: () => t('Fallback connection') },
];
const DIRECT = { id: 'direct', title: () => t('Your connection') };
// No relay answers: nothing about a route or the visitor's network to show.
const SERVICE = (id) => ({ id, title: () => t('Video calls') });
const VERDICT_TEXT = {
  good: () => t('Good'),
  'may be unstable': () => t('May be unstable'),
  'cannot connect': () => t('Cannot connect'),
  unavailable: () => t('Not available right now'),
  'not measured': () => t('Not measured'),
};
const VERDICT_CLASS = {
  good: 'ok', 'may be unstable': 'warn', 'cannot connect': 'bad', unavailable: 'warn', 'not measured': 'muted',
};

function mbits(kbps) {
  return t('%(value)s Mbit/s', { value: formatNumber(kbps / 1000, { minimumFractionDigits: 1, maximumFractionDigits: 1 }) });
}

// The service's advice by key (media_nodes/network_test/service.py ADVICE), in the page's language.
const ADVICE = {
  good: () => t('Your connection is good for a video call.'),
  unsteady: () => t('Your connection is unsteady. Use a wired connection or move closer to the Wi-Fi router, and pause other downloads, streams or video calls on this network.'),
  reception: () => t('On mobile data, a place with better reception helps.'),
  slow_upload: (result) => t('Your upload speed is %(speed)s; a clear video picture needs about %(needed)s. The call will still work, with a softer picture.', { speed: mbits(result.throughput_kbps || 0), needed: mbits(GOOD_UPLOAD_KBPS) }),
  upload_unmeasured: () => t('Your upload speed could not be measured. The call will still work, perhaps with a softer picture.'),
  fallback_lag: () => t('Over the fallback connection a call works, but it can lag when the network is busy.'),
  usual_blocked: () => t('Your network seems to block the usual connection for video calls. Calls will use the fallback connection instead and may be less smooth.'),
  ask_it_usual: () => t('If you are on a work or hospital network, ask your IT department to allow video calls to this service.'),
  blocked: () => t('Your network blocks the connection to this service, so a video call cannot connect.'),
  try_other_network: () => t('Try another network (for example mobile data), or ask your IT department to allow video calls to this service.'),
  unavailable: () => t('The service has a temporary problem with video calls. This is not a problem with your network.'),
  not_measured: () => t('Your connection could not be measured right now. You can still continue: the call will try to connect.'),
  no_answer: () => t('The test connection did not get through. Your network may block video calls to this service.'),
  not_run: () => t('The test could not run. Please try again in a minute.'),
  busy: () => t('Many tests are running right now; please try again in a minute.'),
};

// The advice lines of a result: by key in the page's language (the English text only
// for a key this page does not know).
export function adviceOf(result) {
  const english = result.advice || [];
  if (!result.advice_keys) return english;
  return result.advice_keys.map((key, i) => (ADVICE[key] ? ADVICE[key](result) : english[i] || '')).filter(Boolean);
}

// Browser family and major version, and the language: only what support needs (P10).
export function browserInfo() {
  const ua = navigator.userAgent || '';
  const rules = [
    ['edge', /Edg(?:e|A|iOS)?\/(\d+)/],
    ['opera', /OPR\/(\d+)/],
    ['samsung', /SamsungBrowser\/(\d+)/],
    ['firefox', /(?:Firefox|FxiOS)\/(\d+)/],
    ['chrome', /(?:Chrome|CriOS)\/(\d+)/],
    ['safari', /Version\/(\d+)[\d.]* (?:Mobile\/\S+ )?Safari/],
  ];
  for (const [family, pattern] of rules) {
    const match = ua.match(pattern);
    if (match) return { family, major: Math.min(999, parseInt(match[1], 10)) };
  }
  return null;
}

function language() {
  const tag = navigator.language || '';
  return /^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,2}$/.test(tag) ? tag : null;
}

function waitForGathering(pc) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState !== 'complete') return;
      pc.removeEventListener('icegatheringstatechange', done);
      clearTimeout(timer);
      resolve();
    };
    // Past the timeout, go with the candidates found so far (maybe none: the service says so).
    const timer = setTimeout(() => { pc.removeEventListener('icegatheringstatechange', done); resolve(); }, GATHER_TIMEOUT_MS);
    pc.addEventListener('icegatheringstatechange', done);
  });
}

async function sendBulk(channel, seconds, maxBytes, onProgress) {
  const chunk = new Uint8Array(CHUNK_BYTES);
  const end = performance.now() + seconds * 1000;
  let sent = 0;
  channel.bufferedAmountLowThreshold = MAX_BUFFERED / 2;
  while (performance.now() < end && sent < maxBytes && channel.readyState === 'open') {
    if (channel.bufferedAmount > MAX_BUFFERED) {
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, 50);
        channel.addEventListener('bufferedamountlow', () => { clearTimeout(timer); resolve(); }, { once: true });
      });
      continue;
    }
    channel.send(chunk);
    sent += CHUNK_BYTES;
    if (sent % (CHUNK_BYTES * 32) === 0) {
      onProgress(t('Measuring your upload speed…'));
      await new Promise((resolve) => setTimeout(resolve, 0));
    }
  }
  if (channel.readyState === 'open') channel.send(JSON.stringify({ type: 'sent', bytes: sent }));
}

// A result the page makes itself, when the service could not give one.
function made(transport, verdict, key, extra = {}) {
  return { transport, verdict, advice_keys: [key], ...extra };
}

// One transport's test; resolves with the service's result (verdict, figures, advice).
// A test of the direct path (a region without relays) has the transport "direct".
export async function runTransport(base, transport, { onProgress = () => {}, probeSeconds, bulkSeconds } = {}) {
  onProgress(t('Preparing the test…'));
  const relays = await fetch(`${base}/relays?transport=${transport}`, { credentials: 'same-origin' });
  const relayBody = await relays.json().catch(() => ({}));
  if (relays.status === 503) return made(transport, 'unavailable', 'unavailable');
  if (!relays.ok) return made(transport, 'not measured', 'not_run');
  const direct = relayBody.path === 'direct';
  const tested = direct ? 'direct' : transport;
  const unmeasured = direct ? made(tested, 'not measured', 'not_measured') : null;

  const pc = new RTCPeerConnection({
    iceServers: relayBody.ice_servers,
    iceTransportPolicy: relayBody.ice_transport_policy === 'all' ? 'all' : 'relay',
  });
  try {
    const probe = pc.createDataChannel('probe', { ordered: false, maxRetransmits: 0, negotiated: true, id: PROBE_CHANNEL_ID });
    const bulk = pc.createDataChannel('bulk', { negotiated: true, id: BULK_CHANNEL_ID });
    probe.binaryType = 'arraybuffer';
    bulk.binaryType = 'arraybuffer';
    probe.onmessage = (event) => {
      if (probe.readyState === 'open') probe.send(event.data); // echo: the service times the round trip
    };
    probe.onopen = () => onProgress(t('Measuring the delay…'));
    const result = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('timeout')), RESULT_TIMEOUT_MS);
      bulk.onmessage = (event) => {
        if (typeof event.data !== 'string') return;
        const message = JSON.parse(event.data);
        if (message.type === 'send') {
          sendBulk(bulk, message.seconds, message.max_bytes, onProgress).catch(() => {});
        } else if (message.type === 'result') {
          clearTimeout(timer);
          resolve(message);
        }
      };
    });
    onProgress(t('Connecting…'));
    await pc.setLocalDescription(await pc.createOffer());
    await waitForGathering(pc);
    const body = { transport, sdp: pc.localDescription.sdp };
    if (relayBody.relay) body.relay = relayBody.relay; // the service's end uses the same media node
    const browser = browserInfo();
    if (browser) body.browser = browser;
    const lang = language();
    if (lang) body.language = lang;
    if (probeSeconds) body.probe_seconds = probeSeconds;
    if (bulkSeconds) body.bulk_seconds = bulkSeconds;
    const response = await fetch(base, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    const started = await response.json().catch(() => ({}));
    if (response.status === 503) {
      // No relay answered the service: its trouble; or this server cannot run tests at all.
      return started.verdict === 'unavailable' ? made(tested, 'unavailable', 'unavailable') : made(tested, 'not measured', 'not_run');
    }
    if (response.status === 429) return made(tested, 'not measured', 'busy');
    if (!response.ok) return made(tested, 'not measured', 'not_run');
    if (started.result) return started.result; // the browser found no way through over this transport
    await pc.setRemoteDescription({ type: 'answer', sdp: started.sdp });
    try {
      return await result;
    } catch {
      // The service stores its side's result (a timeout) under this id.
      return unmeasured ? { ...unmeasured, id: started.id } : made(tested, 'cannot connect', 'no_answer', { id: started.id });
    }
  } finally {
    pc.close();
  }
}

function figure(value, unit, digits = 0) {
  if (value === null || value === undefined) return '—';
  return `${formatNumber(Number(value), { maximumFractionDigits: digits, minimumFractionDigits: digits })} ${unit}`;
}

function render(container, route, result) {
  const section = document.createElement('section');
  section.className = 'network-result';
  section.dataset.transport = route.id;
  section.dataset.verdict = result.verdict;
  const head = document.createElement('h3');
  head.textContent = `${route.title()}: `;
  const verdict = document.createElement('span');
  verdict.className = `verdict ${VERDICT_CLASS[result.verdict] || ''}`;
  verdict.textContent = VERDICT_TEXT[result.verdict] ? VERDICT_TEXT[result.verdict]() : result.verdict;
  head.append(verdict);
  section.append(head);
  if (result.rtt_ms !== undefined && result.rtt_ms !== null) {
    const list = document.createElement('dl');
    list.className = 'figures';
    const rows = [
      [t('Delay'), figure(result.rtt_ms, 'ms')],
      [t('Variation'), figure(result.jitter_ms, 'ms', 1)],
      [t('Data lost'), figure(result.loss_percent, '%', 1)],
      [t('Upload speed'), result.throughput_kbps ? mbits(result.throughput_kbps) : '—'],
    ];
    for (const [name, value] of rows) {
      const term = document.createElement('dt');
      term.textContent = name;
      const data = document.createElement('dd');
      data.textContent = value;
      list.append(term, data);
    }
    section.append(list);
  }
  const advice = document.createElement('ul');
  advice.className = 'advice small';
  for (const text of adviceOf(result)) {
    const item = document.createElement('li');
    item.textContent = text;
    advice.append(item);
  }
  section.append(advice);
  container.append(section);
}

// What the visitor should take away from the results together.
export function summary(results, organisation) {
  const all = Object.values(results).filter(Boolean);
  if (all.some((r) => r.verdict === 'unavailable')) {
    return {
      verdict: 'unavailable',
      text: organisation
        ? t('Your video call may not connect right now. This is not a problem with your network. Please keep this page open: if the call cannot start, %(organisation)s will contact you another way, for example by phone if you gave your number.', { organisation })
        : t('Your video call may not connect right now. This is not a problem with your network. Please keep this page open: if the call cannot start, you will be contacted another way, for example by phone if you gave your number.'),
    };
  }
  if (results.direct) {
    const direct = results.direct.verdict;
    if (direct === 'good') return { verdict: 'good', text: t('Your connection is ready for a video call.') };
    if (direct === 'may be unstable') {
      return { verdict: 'may be unstable', text: t('A call will work, but the picture or sound may stutter. See the advice below.') };
    }
    return { verdict: 'not measured', text: t('Your connection could not be measured right now. You can still continue: the call will try to connect.') };
  }
  const udp = results.udp && results.udp.verdict;
  const tcp = results.tcp && results.tcp.verdict;
  if (udp === 'good') return { verdict: 'good', text: t('Your connection is ready for a video call.') };
  if (udp === 'may be unstable') {
    return { verdict: 'may be unstable', text: t('A call will work, but the picture or sound may stutter. See the advice below.') };
  }
  if (tcp === 'good' || tcp === 'may be unstable') {
    return { verdict: 'may be unstable', text: t('Your network blocks the usual connection; calls will use the fallback connection and may be less smooth.') };
  }
  if (udp === 'cannot connect' || tcp === 'cannot connect') {
    return { verdict: 'cannot connect', text: t('A call cannot connect from this network. See the advice below.') };
  }
  return { verdict: 'not measured', text: t('Your connection could not be measured right now. You can still continue: the call will try to connect.') };
}

// P10: the stored results go after 9 months, or now if the visitor asks.
// Every result this page stored, over all runs ("Test again" included).
const storedIds = new Set();

function offerDeletion(root, base, found, status) {
  for (const result of Object.values(found)) if (result && result.id) storedIds.add(result.id);
  const ids = [...storedIds];
  if (!ids.length) return;
  const remove = document.createElement('button');
  remove.type = 'button';
  remove.className = 'secondary small';
  remove.dataset.networkTestDelete = '';
  remove.textContent = t('Delete my test results');
  remove.addEventListener('click', async () => {
    remove.disabled = true;
    const answers = await Promise.all(ids.map((id) =>
      fetch(`${base}/${encodeURIComponent(id)}`, { method: 'DELETE', credentials: 'same-origin' })
        .then((response) => response.ok || response.status === 404)
        .catch(() => false)));
    if (answers.every(Boolean)) {
      for (const id of ids) storedIds.delete(id);
      remove.remove();
      status.textContent = t('Your test results were deleted.');
    } else {
      remove.disabled = false;
      status.textContent = t('Your test results could not be deleted; please try again.');
    }
  });
  root.querySelector('[data-network-test-results]').append(remove);
}

export function wireNetworkTest(root) {
  const button = root.querySelector('[data-network-test-run]');
  const status = root.querySelector('[data-network-test-status]');
  const results = root.querySelector('[data-network-test-results]');
  const base = root.dataset.base;
  if (!button || !status || !results || !base) return;
  if (!window.RTCPeerConnection) {
    button.disabled = true;
    status.textContent = t('This browser cannot make video calls. Please use a current Chrome, Edge, Firefox or Safari.');
    return;
  }
  button.addEventListener('click', async () => {
    button.disabled = true;
    root.dataset.state = 'running';
    status.className = 'small muted';
    results.replaceChildren();
    const found = {};
    try {
      for (const transport of TRANSPORTS) {
        const progress = (text) => { status.textContent = text; };
        let result;
        try {
          result = await runTransport(base, transport.id, {
            onProgress: progress,
            probeSeconds: Number(root.dataset.probeSeconds) || undefined,
            bulkSeconds: Number(root.dataset.bulkSeconds) || undefined,
          });
        } catch {
          result = made(transport.id, 'not measured', 'not_run');
        }
        let route = result.transport === 'direct' ? DIRECT : transport;
        if (result.verdict === 'unavailable') route = SERVICE(route.id);
        found[route.id] = result;
        render(results, route, result);
        // One path to measure (a region without relays), or no relay to measure at all.
        if (route.id === 'direct' || result.verdict === 'unavailable') break;
      }
      const overall = summary(found, root.dataset.organisation);
      status.textContent = overall.text;
      status.className = `small ${VERDICT_CLASS[overall.verdict]}`;
      root.dataset.verdict = overall.verdict;
      root.dataset.state = 'done';
      offerDeletion(root, base, found, status);
    } finally {
      button.disabled = false;
      button.textContent = t('Test again');
    }
  });
}

const root = document.getElementById('network-test');
if (root) wireNetworkTest(root);
