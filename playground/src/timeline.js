// Draws a simulation as an SVG timeline: one row per tier (strongest on top) and one for tries
// that ended without delivery; each attempt a dot coloured by its outcome, each try's attempts
// joined by a line, so a step-down reads as a line going down. Every mark carries data-*
// attributes (delivery, step, tier, outcome, reason) and is keyboard-focusable; `onSelect`
// receives (deliveryIndex, stepIndex). When more tries fall in view than can be told apart, the
// runs of tries that went the same way (the simulator's blocks) are drawn instead, one band per
// run on the rows its tries touch; choosing one calls `onZoom` with a view of its days.
import { DAY } from './model.js';

const SVG = 'http://www.w3.org/2000/svg';
const ROWS = ['authenticated-tls', 'modern-tls', 'legacy-tls', 'cleartext', 'ended'];
const ROW_LABELS = {
  'authenticated-tls': 'authenticated TLS', 'modern-tls': 'modern TLS', 'legacy-tls': 'legacy TLS',
  cleartext: 'cleartext', ended: 'deferred / bounced',
};
const WIDTH = 960;
const LEFT = 150;
const RIGHT = 16;
const TOP = 14;
const ROW_HEIGHT = 34;
const BOTTOM = 30;
/** Past this many tries in view, the timeline draws blocks instead of every attempt. */
export const DENSE_TRIES = 1500;

function el(name, attributes = {}, parent = null) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  if (parent !== null) parent.append(node);
  return node;
}

/**
 * Calls `choose(node)` when a `selector` node inside `group` is clicked, or focused and given
 * Enter or Space: one listener for all of them (a year of an attacker is tens of thousands).
 */
function onChoose(group, selector, choose) {
  const nodeOf = (event) => event.target.closest?.(selector);
  group.addEventListener('click', (event) => {
    const node = nodeOf(event);
    if (node) choose(node);
  });
  group.addEventListener('keydown', (event) => {
    const node = nodeOf(event);
    if (node && (event.key === 'Enter' || event.key === ' ')) {
      event.preventDefault();
      choose(node);
    }
  });
}

/** The class of an outcome's mark. */
export function outcomeClass(outcome) {
  if (outcome === null) return 'final';
  return outcome.outcome === 'success' ? 'ok' : 'failed';
}

/**
 * Draws `run` (src/model.js `pageRun`) over `days` days from `start` into `container` (or the
 * days `view` asks for); the marks of messages in `outlined` (message numbers) are outlined.
 */
export function drawTimeline(container, run, {
  start, days, attackerFrom, onSelect, onZoom = () => {}, outlined = new Set(), view = null,
}) {
  // The days shown: the whole run, or the part `view` ({from, to} in days) asks for.
  const from = view === null ? 0 : Math.max(0, Math.min(view.from, days));
  const to = view === null ? days : Math.max(from + 1 / 24, Math.min(view.to, days));
  const first = start + from * DAY;
  const last = start + to * DAY;
  container.replaceChildren();
  const height = TOP + ROWS.length * ROW_HEIGHT + BOTTOM;
  const svg = el('svg', {
    viewBox: `0 0 ${WIDTH} ${height}`, width: '100%', role: 'img', class: 'timeline',
    'aria-label': `Timeline of delivery tries, days ${from} to ${to} of ${days}`,
  }, container);
  const x = (at) => LEFT + ((at - first) / (last - first)) * (WIDTH - LEFT - RIGHT);
  const y = (row) => TOP + ROWS.indexOf(row) * ROW_HEIGHT + ROW_HEIGHT / 2;

  if (attackerFrom !== null && attackerFrom < to) {
    const zone = x(start + Math.max(attackerFrom, from) * DAY);
    el('rect', {
      x: zone, y: TOP, width: WIDTH - RIGHT - zone, height: ROWS.length * ROW_HEIGHT, class: 'attacker-zone',
    }, svg);
    const label = el('text', { x: zone + 4, y: TOP + 10, class: 'attacker-label' }, svg);
    label.textContent = 'attacker on path';
  }
  for (const row of ROWS) {
    el('line', { x1: LEFT, x2: WIDTH - RIGHT, y1: y(row), y2: y(row), class: 'row-line' }, svg);
    const label = el('text', { x: LEFT - 8, y: y(row) + 4, class: 'row-label', 'text-anchor': 'end' }, svg);
    label.textContent = ROW_LABELS[row];
  }
  // At most ~15 ticks, on whole hours or days.
  const STEPS = [3600, 3 * 3600, 6 * 3600, 12 * 3600, DAY, 2 * DAY, 7 * DAY, 14 * DAY, 30 * DAY, 90 * DAY];
  const tick = STEPS.find((step) => (last - first) / step <= 15) ?? 180 * DAY;
  for (let at = first + ((tick - ((first - start) % tick)) % tick); at <= last; at += tick) {
    const position = x(at);
    el('line', { x1: position, x2: position, y1: TOP, y2: TOP + ROWS.length * ROW_HEIGHT, class: 'tick' }, svg);
    // A label at the right edge ends there instead of being cut off.
    const anchor = position > WIDTH - RIGHT - 30 ? 'end' : 'middle';
    const label = el('text', { x: position, y: height - 10, class: 'tick-label', 'text-anchor': anchor }, svg);
    const offset = at - start;
    label.textContent = tick < DAY
      ? `day ${Math.floor(offset / DAY)} ${String(Math.floor((offset % DAY) / 3600)).padStart(2, '0')}h`
      : `day ${offset / DAY}`;
  }

  const [firstInView, triesInView] = run.between(first, last);
  if (triesInView > DENSE_TRIES) {
    drawBlocks(svg, run, { first, last, start, x, y, onZoom, triesInView });
    return svg;
  }

  const marks = el('g', { class: 'marks' }, svg);
  // One listener for every mark (a year of an attacker is tens of thousands of them), and each
  // mark's tooltip made when the pointer first reaches it.
  const markOf = (event) => event.target.closest?.('.mark');
  onChoose(marks, '.mark', (mark) => onSelect(Number(mark.dataset.delivery), Number(mark.dataset.step)));
  marks.addEventListener('pointerover', (event) => {
    const mark = markOf(event);
    if (!mark || mark.firstChild) return;
    const delivery = run.delivery(Number(mark.dataset.delivery));
    const step = delivery.steps[Number(mark.dataset.step)];
    const r = step.response;
    el('title', {}, mark).textContent = `#${delivery.message} ${r.action}${r.tier ? ` ${r.tier}` : ''}`
      + `${step.outcome ? ` → ${step.outcome.outcome}` : ''} (${r.reason})`;
  });
  const lines = document.createDocumentFragment();
  const dots = document.createDocumentFragment();
  run.range(firstInView, triesInView).forEach((delivery, k) => {
    const d = firstInView + k;
    const points = [];
    delivery.steps.forEach((step, s) => {
      const { response } = step;
      const row = response.action === 'attempt' ? response.tier : response.action === 'done' ? null : 'ended';
      if (row === null || (view !== null && (step.at < first || step.at >= last))) return;
      const cx = x(step.at);
      const cy = y(row);
      points.push(`${cx.toFixed(1)},${cy}`);
      const attributes = {
        class: `mark ${response.action === 'attempt' ? 'attempt' : 'final'} ${outcomeClass(step.outcome)}`
          + `${response.action === 'bounce' ? ' bounce' : ''}${outlined.has(delivery.message) ? ' differs' : ''}`,
        tabindex: 0,
        'data-delivery': d,
        'data-step': s,
        'data-action': response.action,
        'data-reason': response.reason,
      };
      if (response.action === 'attempt') {
        attributes['data-tier'] = response.tier;
        attributes['data-outcome'] = step.outcome.outcome;
      }
      if (response.action === 'attempt') el('circle', { ...attributes, cx, cy, r: 4.5 }, dots);
      else el('rect', { ...attributes, x: cx - 4, y: cy - 4, width: 8, height: 8 }, dots);
    });
    if (points.length > 1) el('polyline', { points: points.join(' '), class: 'try-line' }, lines);
  });
  // Built off-document and added at once; lines under the dots.
  marks.append(lines, dots);
  return svg;
}

/** Marks the selected step in a drawn timeline. */
export function highlight(container, delivery, step) {
  for (const mark of container.querySelectorAll('.mark.selected')) mark.classList.remove('selected');
  const mark = container.querySelector(`.mark[data-delivery="${delivery}"][data-step="${step}"]`);
  if (mark !== null) mark.classList.add('selected');
}

/** The row of a step: its tier for an attempt, `ended` for a defer or bounce, none for done. */
function rowOf(response) {
  if (response.action === 'attempt') return response.tier;
  return response.action === 'done' ? null : 'ended';
}

/**
 * Draws the blocks in view: each a band from its first try's start to its last try's end on
 * every row its tries touch (they all went the same way), coloured as its tries' marks would be.
 */
function drawBlocks(svg, run, { first, last, start, x, y, onZoom, triesInView }) {
  const blocks = run.blocks.map((block, index) => ({ block, index }))
    .filter(({ block }) => block.endedAt >= first && block.startedAt < last);
  const note = el('text', { x: WIDTH - RIGHT, y: TOP - 3, class: 'blocks-note', 'text-anchor': 'end' }, svg);
  note.textContent = `${triesInView} tries drawn as ${blocks.length} blocks of tries that went the same way: choose one to see its tries`;
  const group = el('g', { class: 'blocks' }, svg);
  // The days to show for a block: its own, or as many of its first tries as can be told apart.
  const zoomOf = (block) => {
    const shown = run.delivery(Math.min(block.first + DENSE_TRIES / 2, block.first + block.count) - 1);
    const to = block.count > DENSE_TRIES / 2 ? shown.endedAt : block.endedAt;
    return {
      from: Math.floor((block.startedAt - start) / 3600) / 24,
      to: Math.ceil((to + 1 - start) / 3600) / 24,
    };
  };
  onChoose(group, '.block', (node) => onZoom(zoomOf(run.blocks[Number(node.dataset.block)])));
  for (const { block, index } of blocks) {
    const sample = run.delivery(block.first);
    const left = x(Math.max(block.startedAt, first));
    const width = Math.max(3, x(Math.min(block.endedAt, last)) - left);
    const course = sample.steps.map((step) => (step.response.action === 'attempt'
      ? `${step.response.tier} → ${step.outcome.outcome}` : `${step.response.action} (${step.response.reason})`)).join(', ');
    const node = el('g', {
      class: 'block', tabindex: 0, role: 'button', 'data-block': index, 'data-first': block.first, 'data-count': block.count,
      'aria-label': `${block.count} tries like message #${sample.message}'s: ${course}`,
    }, group);
    el('title', {}, node).textContent = `${block.count} tries (${block.expired} expired) like #${sample.message}: ${course}`;
    const rows = [];
    for (const step of sample.steps) {
      const row = rowOf(step.response);
      if (row === null || rows.some((r) => r.row === row)) continue;
      rows.push({ row, step });
    }
    if (rows.length > 1) {
      // The space between its bands is the block's too: a click there opens it.
      const ys = rows.map(({ row }) => y(row));
      el('rect', { x: left, y: Math.min(...ys) - 6, width, height: Math.max(...ys) - Math.min(...ys) + 12, class: 'hit' }, node);
    }
    for (const { row, step } of rows) {
      el('rect', {
        x: left, y: y(row) - 6, width, height: 12, rx: 3,
        class: `band ${outcomeClass(step.outcome)}${step.response.action === 'bounce' ? ' bounce' : ''}`,
      }, node);
    }
    if (width > 36 && rows.length > 0) {
      const label = el('text', { x: left + width / 2, y: y(rows[0].row) - 9, class: 'block-count', 'text-anchor': 'middle' }, node);
      label.textContent = `×${block.count}`;
    }
  }
}
