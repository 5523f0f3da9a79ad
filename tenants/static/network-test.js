// The pre-call network test on the visitor's device-check step: a test connection to
// a peer in the region service, through the region's relay only, once over UDP and
// once over TCP. The service measures round-trip time, jitter, loss and upload
// speed, stores them without any link to the visit, and sends back a verdict and advice.
//
// Signaling is plain HTTP and non-trickle: GET <base>/relays?transport=… for the ICE
// servers, gather the relay candidates, POST the offer to <base>, apply the answer.
// The channels are negotiated with fixed ids (media_nodes/network_test/peer.py).

const PROBE_CHANNEL_ID = 1;
const BULK_CHANNEL_ID = 2;
const CHUNK_BYTES = 16 * 1024;
const MAX_BUFFERED = 1024 * 1024;
const GATHER_TIMEOUT_MS = 8000;
const RESULT_TIMEOUT_MS = 30000;
const TRANSPORTS = [
  { id: 'udp', title: 'UDP (preferred for calls)' },
  { id: 'tcp', title: 'TCP (fallback)' },
];
const VERDICT_TEXT = { good: 'Good', 'may be unstable': 'May be unstable', 'cannot connect': 'Cannot connect' };
const VERDICT_CLASS = { good: 'ok', 'may be unstable': 'warn', 'cannot connect': 'bad' };

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
      onProgress('Measuring your upload speed…');
      await new Promise((resolve) => setTimeout(resolve, 0));
    }
  }
  if (channel.readyState === 'open') channel.send(JSON.stringify({ type: 'sent', bytes: sent }));
}

// One transport's test; resolves with the service's result (verdict, figures, advice).
export async function runTransport(base, transport, { onProgress = () => {}, probeSeconds, bulkSeconds } = {}) {
  onProgress('Finding the relay…');
  const relays = await fetch(`${base}/relays?transport=${transport}`, { credentials: 'same-origin' });
  const relayBody = await relays.json().catch(() => ({}));
  if (relays.status === 503) {
    return { transport, verdict: 'cannot connect', advice: relayBody.advice || [relayBody.message || 'No relay is available.'] };
  }
  if (!relays.ok) throw new Error(relayBody.message || `the relays could not be fetched (${relays.status})`);

  const pc = new RTCPeerConnection({ iceServers: relayBody.ice_servers, iceTransportPolicy: 'relay' });
  try {
    const probe = pc.createDataChannel('probe', { ordered: false, maxRetransmits: 0, negotiated: true, id: PROBE_CHANNEL_ID });
    const bulk = pc.createDataChannel('bulk', { negotiated: true, id: BULK_CHANNEL_ID });
    probe.binaryType = 'arraybuffer';
    bulk.binaryType = 'arraybuffer';
    probe.onmessage = (event) => {
      if (probe.readyState === 'open') probe.send(event.data); // echo: the service times the round trip
    };
    probe.onopen = () => onProgress('Measuring the round-trip time…');
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
    onProgress('Connecting through the relay…');
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
      return { transport, verdict: 'cannot connect', advice: started.advice || [started.message] };
    }
    if (response.status === 429) throw new Error('Many tests are running right now; please try again in a minute.');
    if (!response.ok) throw new Error(started.message || `the test could not start (${response.status})`);
    if (started.result) return started.result; // no relay candidate: the network blocked this transport
    await pc.setRemoteDescription({ type: 'answer', sdp: started.sdp });
    try {
      return await result;
    } catch {
      return {
        id: started.id, // the service stores its side's result (a timeout) under this id
        transport,
        verdict: 'cannot connect',
        advice: ['The test connection did not get through. Your network may block the media relay.'],
      };
    }
  } finally {
    pc.close();
  }
}

function figure(value, unit, digits = 0) {
  return value === null || value === undefined ? '—' : `${Number(value).toFixed(digits)} ${unit}`;
}

function render(container, transport, result) {
  const section = document.createElement('section');
  section.className = 'network-result';
  section.dataset.transport = transport.id;
  section.dataset.verdict = result.verdict;
  const head = document.createElement('h3');
  head.textContent = `${transport.title}: `;
  const verdict = document.createElement('span');
  verdict.className = `verdict ${VERDICT_CLASS[result.verdict] || ''}`;
  verdict.textContent = VERDICT_TEXT[result.verdict] || result.verdict;
  head.append(verdict);
  section.append(head);
  if (result.verdict !== 'cannot connect') {
    const list = document.createElement('dl');
    list.className = 'figures';
    const rows = [
      ['Round trip', figure(result.rtt_ms, 'ms')],
      ['Jitter', figure(result.jitter_ms, 'ms', 1)],
      ['Loss', figure(result.loss_percent, '%', 1)],
      ['Upload', result.throughput_kbps ? `${(result.throughput_kbps / 1000).toFixed(1)} Mbit/s` : '—'],
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
  for (const text of result.advice || []) {
    const item = document.createElement('li');
    item.textContent = text;
    advice.append(item);
  }
  section.append(advice);
  container.append(section);
}

// What the visitor should take away from both results together.
export function summary(results) {
  const udp = results.udp && results.udp.verdict;
  const tcp = results.tcp && results.tcp.verdict;
  if (udp === 'good') return { verdict: 'good', text: 'Your connection is ready for a video call.' };
  if (udp === 'may be unstable') {
    return { verdict: 'may be unstable', text: 'A call will work, but the picture or sound may stutter. See the advice below.' };
  }
  if (tcp && tcp !== 'cannot connect') {
    return { verdict: 'may be unstable', text: 'Your network blocks UDP; calls will use TCP and may be less smooth.' };
  }
  return { verdict: 'cannot connect', text: 'A call cannot connect from this network. See the advice below.' };
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
  remove.textContent = 'Delete my test results';
  remove.addEventListener('click', async () => {
    remove.disabled = true;
    const answers = await Promise.all(ids.map((id) =>
      fetch(`${base}/${encodeURIComponent(id)}`, { method: 'DELETE', credentials: 'same-origin' })
        .then((response) => response.ok || response.status === 404)
        .catch(() => false)));
    if (answers.every(Boolean)) {
      for (const id of ids) storedIds.delete(id);
      remove.remove();
      status.textContent = 'Your test results were deleted.';
    } else {
      remove.disabled = false;
      status.textContent = 'Your test results could not be deleted; please try again.';
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
    status.textContent = 'This browser cannot make video calls. Please use a current Chrome, Edge, Firefox or Safari.';
    return;
  }
  button.addEventListener('click', async () => {
    button.disabled = true;
    root.dataset.state = 'running';
    results.replaceChildren();
    const found = {};
    try {
      for (const transport of TRANSPORTS) {
        const progress = (text) => { status.textContent = `${transport.id.toUpperCase()}: ${text}`; };
        try {
          found[transport.id] = await runTransport(base, transport.id, {
            onProgress: progress,
            probeSeconds: Number(root.dataset.probeSeconds) || undefined,
            bulkSeconds: Number(root.dataset.bulkSeconds) || undefined,
          });
        } catch (err) {
          found[transport.id] = { verdict: 'cannot connect', advice: [err && err.message ? err.message : String(err)] };
        }
        render(results, transport, found[transport.id]);
      }
      const overall = summary(found);
      status.textContent = overall.text;
      status.className = `small ${VERDICT_CLASS[overall.verdict]}`;
      root.dataset.verdict = overall.verdict;
      root.dataset.state = 'done';
      offerDeletion(root, base, found, status);
    } finally {
      button.disabled = false;
      button.textContent = 'Test again';
    }
  });
}

const root = document.getElementById('network-test');
if (root) wireNetworkTest(root);
