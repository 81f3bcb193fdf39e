// Draws a simulation as an SVG timeline: one row per tier (strongest on top) and one for tries
// that ended without delivery; each attempt a dot coloured by its outcome, each try's attempts
// joined by a line, so a step-down reads as a line going down. Every mark carries data-*
// attributes (delivery, step, tier, outcome, reason) and is keyboard-focusable; `onSelect`
// receives (deliveryIndex, stepIndex).
import { DAY } from './simulate.js';

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

function el(name, attributes = {}, parent = null) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  if (parent !== null) parent.append(node);
  return node;
}

/** The class of an outcome's mark. */
export function outcomeClass(outcome) {
  if (outcome === null) return 'final';
  return outcome.outcome === 'success' ? 'ok' : 'failed';
}

/**
 * Draws `run` (from src/simulate.js) over `days` days from `start` into `container`; the marks of
 * messages in `outlined` (message numbers) are outlined.
 */
export function drawTimeline(container, run, { start, days, attackerFrom, onSelect, outlined = new Set() }) {
  container.replaceChildren();
  const height = TOP + ROWS.length * ROW_HEIGHT + BOTTOM;
  const svg = el('svg', {
    viewBox: `0 0 ${WIDTH} ${height}`, width: '100%', role: 'img', class: 'timeline',
    'aria-label': `Timeline of ${run.deliveries.length} delivery tries over ${days} days`,
  }, container);
  const x = (at) => LEFT + ((at - start) / (days * DAY)) * (WIDTH - LEFT - RIGHT);
  const y = (row) => TOP + ROWS.indexOf(row) * ROW_HEIGHT + ROW_HEIGHT / 2;

  if (attackerFrom !== null && attackerFrom < days) {
    el('rect', {
      x: x(start + attackerFrom * DAY), y: TOP, width: WIDTH - RIGHT - x(start + attackerFrom * DAY),
      height: ROWS.length * ROW_HEIGHT, class: 'attacker-zone',
    }, svg);
    const label = el('text', { x: x(start + attackerFrom * DAY) + 4, y: TOP + 10, class: 'attacker-label' }, svg);
    label.textContent = 'attacker on path';
  }
  for (const row of ROWS) {
    el('line', { x1: LEFT, x2: WIDTH - RIGHT, y1: y(row), y2: y(row), class: 'row-line' }, svg);
    const label = el('text', { x: LEFT - 8, y: y(row) + 4, class: 'row-label', 'text-anchor': 'end' }, svg);
    label.textContent = ROW_LABELS[row];
  }
  const tickEvery = Math.max(1, Math.ceil(days / 15));
  for (let day = 0; day <= days; day += tickEvery) {
    const at = x(start + day * DAY);
    el('line', { x1: at, x2: at, y1: TOP, y2: TOP + ROWS.length * ROW_HEIGHT, class: 'tick' }, svg);
    const label = el('text', { x: at, y: height - 10, class: 'tick-label', 'text-anchor': 'middle' }, svg);
    label.textContent = `day ${day}`;
  }

  const marks = el('g', { class: 'marks' }, svg);
  // One listener for every mark (a year of an attacker is tens of thousands of them), and each
  // mark's tooltip made when the pointer first reaches it.
  const markOf = (event) => event.target.closest?.('.mark');
  const choose = (mark) => onSelect(Number(mark.dataset.delivery), Number(mark.dataset.step));
  marks.addEventListener('click', (event) => {
    const mark = markOf(event);
    if (mark) choose(mark);
  });
  marks.addEventListener('keydown', (event) => {
    const mark = markOf(event);
    if (mark && (event.key === 'Enter' || event.key === ' ')) {
      event.preventDefault();
      choose(mark);
    }
  });
  marks.addEventListener('pointerover', (event) => {
    const mark = markOf(event);
    if (!mark || mark.firstChild) return;
    const delivery = run.deliveries[Number(mark.dataset.delivery)];
    const step = delivery.steps[Number(mark.dataset.step)];
    const r = step.response;
    el('title', {}, mark).textContent = `#${delivery.message} ${r.action}${r.tier ? ` ${r.tier}` : ''}`
      + `${step.outcome ? ` → ${step.outcome.outcome}` : ''} (${r.reason})`;
  });
  const lines = document.createDocumentFragment();
  const dots = document.createDocumentFragment();
  run.deliveries.forEach((delivery, d) => {
    const points = [];
    delivery.steps.forEach((step, s) => {
      const { response } = step;
      const row = response.action === 'attempt' ? response.tier : response.action === 'done' ? null : 'ended';
      if (row === null) return;
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
