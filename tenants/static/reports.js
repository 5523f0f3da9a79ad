// Compliance reports for owners, admins and auditors: start one (it runs in the
// background in the organisation's region), follow its progress, download each format.
// Errors are told in the words of the form (its labels), never as the API's field names.
import { t } from '/static/i18n.js';
import { $, api as call, calendarDay, el, messages, orgApi, sentence, when } from '/static/portal.js';

const apiBase = orgApi('/reports');
const FRAMEWORKS = {
  gdpr: () => t('GDPR'),
  hipaa: () => t('HIPAA Security Rule'),
  nen7510: () => t('NEN 7510 / NEN 7513'),
  normen: () => t('Normen'),
};
const FORMATS = {
  pdf: () => t('PDF report'),
  json: () => t('JSON document'),
  csv: () => t('Evidence workbook (CSV)'),
  zip: () => t('Signed evidence archive (ZIP)'),
  ropa: () => t('Record of processing (CSV)'),
  oscal: () => t('OSCAL assessment results'),
};
// The API's names of the form's fields: the input and the label a person sees.
const FIELDS = {
  framework: { input: 'report-framework', label: () => t('Framework'), kind: 'choice' },
  from: { input: 'report-from', label: () => t('First day'), kind: 'date' },
  to: { input: 'report-to', label: () => t('Last day'), kind: 'date' },
};
// What the API says about a field, in the page's words.
const FIELD_PROBLEMS = {
  'the period ends before it starts': () => t('the last day must not be before the first day.'),
  'the period starts in the future': () => t('the period must not start in the future.'),
  'a period may be at most 3 years long': () => t('a period may be at most 3 years long.'),
};
// A report's progress and failure as stored, in the page's language (from the server).
const PROGRESS = JSON.parse(($('progress-texts') || {}).textContent || '{}');
const said = (text) => (Object.prototype.hasOwnProperty.call(PROGRESS, text) ? PROGRESS[text] : text);
const POLL_MS = 1500;
let polling = null;
let starting = false;
const startedHere = new Set(); // reports started on this page, announced when they end

class Problem extends Error {
  constructor(message, field = null) {
    super(message);
    this.field = field;
  }
}

// What went wrong, in plain words, and which field of the form it is about.
function problemOf(error) {
  const body = error.body || null;
  const message = body && typeof body.message === 'string' ? body.message : '';
  if (error.status === 400) {
    const named = /^(\w+): ([\s\S]+)$/.exec(message);
    if (named && FIELDS[named[1]]) {
      const detail = FIELD_PROBLEMS[named[2].trim()];
      const text = detail ? detail() : sentence(named[2]);
      return new Problem(t('%(field)s: %(problem)s', { field: FIELDS[named[1]].label(), problem: text }), named[1]);
    }
    for (const detail of (body && Array.isArray(body.details)) ? body.details : []) {
      const at = /`\$\.(\w+)`|`(\w+)`/.exec(String(detail));
      const name = at && (at[1] || at[2]);
      if (name && FIELDS[name]) {
        const field = FIELDS[name];
        const problem = field.kind === 'date' ? t('not a valid date.') : t('not a valid choice.');
        return new Problem(t('%(field)s: %(problem)s', { field: field.label(), problem }), name);
      }
    }
  }
  return new Problem(error.message);
}

async function api(path, options = {}) {
  try {
    return await call(`/reports${path}`, options);
  } catch (error) {
    throw problemOf(error);
  }
}

const { error: showError, notice: showNotice } = messages('reports-error', 'reports-notice');

function markField(name) {
  for (const [key, field] of Object.entries(FIELDS)) {
    const input = $(field.input);
    if (key === name) input.setAttribute('aria-invalid', 'true');
    else input.removeAttribute('aria-invalid');
  }
  if (name) $(FIELDS[name].input).focus();
}

const nameOf = (report) => (FRAMEWORKS[report.framework] ? FRAMEWORKS[report.framework]() : report.framework);
const periodOf = (report) => `${calendarDay(report.from)} – ${calendarDay(report.to)}`;

function statusCell(report) {
  if (report.status === 'done') return el('td', { className: 'status ok' }, t('Ready'));
  if (report.status === 'failed') {
    const why = report.message ? said(report.message) : t('the report could not be made.');
    return el('td', { className: 'status bad' }, t('Failed: %(why)s', { why }));
  }
  const bar = el('progress', { max: 100, value: report.progress, 'aria-label': t('Progress of the %(framework)s report', { framework: nameOf(report) }) });
  const label = report.status === 'queued' ? t('Waiting to start') : said(report.step);
  return el('td', { className: 'status' }, bar, ' ', el('span', { className: 'small' }, `${report.progress}% · ${label}`));
}

function downloads(report) {
  if (report.status !== 'done') return el('td', { className: 'downloads' });
  const list = el('ul', { className: 'downloads' });
  for (const format of report.formats) {
    list.append(el('li', {}, el('a', {
      href: `${apiBase}/${report.id}/files/${format}`,
      download: '',
      dataset: { key: `${report.id}/${format}` },
      // Which report a link is of, for those who hear the page: its framework and period.
      'aria-describedby': `report-${report.id}-name report-${report.id}-period`,
    }, FORMATS[format] ? FORMATS[format]() : format)));
  }
  return el('td', { className: 'downloads' }, list);
}

// The column headings, for the narrow layout that shows each row as a block.
const HEADINGS = [t('Made'), t('Framework'), t('Period'), t('Status'), t('Download')];

function row(report, signature) {
  const cells = [
    el('td', {}, when(report.created_at)),
    el('td', { id: `report-${report.id}-name` }, nameOf(report)),
    el('td', { id: `report-${report.id}-period` }, periodOf(report)),
    statusCell(report),
    downloads(report),
  ];
  cells.forEach((cell, i) => { cell.dataset.label = HEADINGS[i]; });
  return el('tr', { dataset: { id: report.id, signature } }, ...cells);
}

// Rows that did not change are kept where they are (a new report's row is inserted
// before them, a changed one replaced in place), so a download link that has the
// keyboard focus keeps it while another report's progress is redrawn.
function render(reports) {
  const body = $('reports').querySelector('tbody');
  const shown = new Map([...body.children].map((node) => [node.dataset.id, node]));
  const wanted = reports.map((report) => {
    const signature = JSON.stringify(report);
    const old = shown.get(report.id);
    if (old && old.dataset.signature === signature) return old;
    const fresh = row(report, signature);
    if (old) old.replaceWith(fresh);
    return fresh;
  });
  const keep = new Set(wanted);
  for (const node of shown.values()) if (!keep.has(node) && node.parentNode === body) node.remove();
  let next = null;
  for (const node of [...wanted].reverse()) {
    if (node.parentNode !== body) body.insertBefore(node, next);
    next = node;
  }
  if (![...body.children].every((node, i) => node === wanted[i])) body.replaceChildren(...wanted);
  $('reports-empty').hidden = reports.length > 0;
}

function announce(reports) {
  for (const report of reports) {
    if (!startedHere.has(report.id) || report.status === 'queued' || report.status === 'running') continue;
    startedHere.delete(report.id);
    if (report.status === 'done') {
      showNotice(t('The %(framework)s report for %(period)s is ready: download it in the list below.', { framework: nameOf(report), period: periodOf(report) }));
    } else {
      const why = report.message ? said(report.message) : t('no reason was given.');
      showError(t('The %(framework)s report could not be made: %(why)s', { framework: nameOf(report), why }));
    }
  }
}

function stopPolling() {
  if (polling !== null) { clearInterval(polling); polling = null; }
}

async function refresh() {
  try {
    const reports = await api('');
    render(reports);
    announce(reports);
    const busy = reports.some((r) => r.status === 'queued' || r.status === 'running');
    if (busy && polling === null) polling = setInterval(refresh, POLL_MS);
    if (!busy) stopPolling();
  } catch (error) {
    stopPolling(); // a session that ended or a region away: asking again will not help
    showError(error.message);
  }
}

$('start-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const from = $('report-from').value;
  const to = $('report-to').value;
  markField(null);
  if (!from) { showError(t('First day: choose the first day of the period.')); markField('from'); return; }
  if (!to) { showError(t('Last day: choose the last day of the period.')); markField('to'); return; }
  if (to < from) { showError(t('Last day: the last day must not be before the first day.')); markField('to'); return; }
  if (starting) return; // a second press while the first is on its way
  starting = true;
  try {
    const made = await api('', { method: 'POST', body: { framework: $('report-framework').value, from, to } });
    startedHere.add(made.id);
    showNotice(t('The %(framework)s report is being made; its progress is shown in the list below.', { framework: nameOf(made) }));
    await refresh();
  } catch (error) {
    showError(error.message);
    markField(error.field);
  } finally {
    starting = false;
  }
});

for (const field of Object.values(FIELDS)) {
  $(field.input).addEventListener('input', () => $(field.input).removeAttribute('aria-invalid'));
}

const today = new Date().toISOString().slice(0, 10);
$('report-to').value = today;
$('report-from').value = `${today.slice(0, 4)}-01-01`;
$('report-from').max = today;
$('report-to').max = today;
refresh();
