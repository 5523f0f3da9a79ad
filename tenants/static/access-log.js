// The organisation's access log (owners, admins, auditors): times in the browser's time
// zone, the export of the filtered entries as a CSV file, and the integrity check (what
// `konsil audit verify` runs) said in words. The list and its filters are drawn by the
// server, so the page works without this script too.
import { t } from '/static/i18n.js';
import { $, main, api, download, el, messages, whenExact, timeZone } from '/static/portal.js';

const { error, notice } = messages('log-error', 'log-notice');
const zone = timeZone();

// The page was drawn in UTC (no time zone was known yet): show the browser's local
// times, and let the next filter and the export use the same zone.
if (main.dataset.zone === 'UTC' && zone !== 'UTC') {
  for (const node of document.querySelectorAll('time[datetime]')) node.textContent = whenExact(node.dateTime);
  $('zone-note').textContent = t('Times in your time zone (%(zone)s).', { zone });
  $('log-tz').value = zone;
}

function exportUrl() {
  const url = new URL($('export').href, window.location.href);
  if (!url.searchParams.get('tz') && zone !== 'UTC') url.searchParams.set('tz', zone);
  return url.pathname + url.search;
}

$('export').addEventListener('click', async (event) => {
  event.preventDefault();
  const link = $('export');
  link.setAttribute('aria-disabled', 'true');
  try {
    const { blob, name } = await api(exportUrl(), { as: 'blob' });
    download(blob, name || 'access-log.csv');
    notice(t('The entries were exported: %(name)s.', { name: name || 'access-log.csv' }));
  } catch (e) {
    error(e.message);
  } finally {
    link.removeAttribute('aria-disabled');
  }
});

// --- the integrity check -------------------------------------------------------------------

const WHY = {
  modified: () => t('it was changed after it was written.'),
  deleted: () => t('entries are missing at this point.'),
  reordered: () => t('entries were moved out of their order.'),
  rewritten: () => t('the log no longer matches what the region sealed or signed: it was rewritten.'),
  forged: () => t('it is dated before an entry it follows, so it was added afterwards.'),
  uncheckable: () => t('a signed checkpoint cannot be checked, because the entries it covers were removed.'),
  tampered: () => t('here the region recorded that it found the end of the log tampered with.'),
};

function entryLink(seq) {
  const url = new URL(window.location.href);
  for (const name of ['actor', 'subject', 'from', 'to', 'outcome']) url.searchParams.delete(name);
  url.searchParams.set('before', String(seq + 1));
  if (zone !== 'UTC') url.searchParams.set('tz', zone);
  return el('a', { href: url.pathname + url.search }, t('Show entry %(seq)s in the list', { seq }));
}

function showResult(r) {
  const box = $('integrity');
  const lines = [];
  if (r.ok) {
    box.dataset.state = 'ok';
    lines.push(el('p', { className: 'verdict' }, t('The log is intact.')));
    if (r.verified === 1) {
      lines.push(el('p', {}, t('Verified up to entry %(last)s: the only entry is unchanged.', { last: r.last_seq })));
    } else if (r.verified > 1) {
      lines.push(el('p', {}, t('Verified up to entry %(last)s: all %(count)s entries from entry %(first)s on are unchanged and complete.', {
        last: r.last_seq, count: r.verified, first: r.first_seq,
      })));
    } else {
      lines.push(el('p', {}, t('The log has no entries to check yet.')));
    }
    if (r.first_seq > 1) {
      lines.push(el('p', { className: 'small' }, t('Entries before entry %(first)s were removed when their retention period ended.', { first: r.first_seq })));
    }
    if (r.sealed) lines.push(el('p', { className: 'small' }, t('The end of the log carries the region’s seal.')));
  } else {
    box.dataset.state = 'broken';
    const problem = r.problem || { seq: r.last_seq + 1, kind: 'modified' };
    lines.push(el('p', { className: 'verdict' }, t('The log does not verify.')));
    lines.push(el('p', {}, t('The first entry that does not verify is entry %(seq)s:', { seq: problem.seq }), ' ', (WHY[problem.kind] || WHY.modified)()));
    let before = t('No entry before it could be verified.');
    if (r.verified === 1) before = t('The entry before it verified.');
    else if (r.verified > 1) before = t('The %(count)s entries before it verified.', { count: r.verified });
    lines.push(el('p', {}, before));
    if (r.alarms > 0 && problem.kind !== 'tampered') {
      lines.push(el('p', {}, t('The region itself also recorded that it found the log tampered with.')));
    }
    lines.push(el('p', { className: 'small' }, t('Keep this result and tell your auditor and Konsil support. Entries from this point on may not be complete or true.')));
    lines.push(el('p', { className: 'small' }, entryLink(problem.seq)));
  }
  lines.push(el('p', { className: 'small muted' }, t('Checked %(when)s. The check itself was written to the log.', { when: whenExact(r.checked_at) })));
  box.replaceChildren(...lines);
  box.hidden = false;
}

$('verify').addEventListener('click', async () => {
  const button = $('verify');
  const box = $('integrity');
  button.disabled = true;
  box.dataset.state = 'checking';
  box.replaceChildren(el('p', {}, t('Checking every entry of the log…')));
  box.hidden = false;
  try {
    showResult(await api('/access-log/verify'));
  } catch (e) {
    box.hidden = true;
    error(e.message);
  } finally {
    button.disabled = false;
  }
});
