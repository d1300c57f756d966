// Drives the board page in Debian's Chromium through playwright-core.
//
// `tests/integration/browser.rs` starts the ledger, loads a known history
// and runs this script with what the page should show; the script opens
// the page as a board member would, checks the figures, posts new events
// and waits for the page to follow them live. It exits 0 when every check
// holds and 1 with the reason otherwise, leaving a screenshot either way.
//
// Environment:
//   BOARD_BASE       the ledger's address, e.g. http://127.0.0.1:8123
//   BOARD_SLUG       the partnership
//   BOARD_TOKEN      a board token of that partnership
//   PUBLISHER_TOKEN  a publisher token of that partnership
//   BOARD_EXPECT     JSON: {tiles: {measure: shown text}, suppressed: [JSON pointer],
//                    flags: {rule: count}, live_events: [CloudEvent],
//                    live_tiles: {measure: shown text}}
//   SCREENSHOT       where to save the page as PNG
//   CHROMIUM         the browser, default /usr/bin/chromium
//   NODE_PATH        the node_modules folder that holds playwright-core

import { createRequire } from 'node:module';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

// `import` ignores NODE_PATH; a CommonJS require honours it.
const require = createRequire(import.meta.url);
const { chromium } = require('playwright-core');

const env = (name, fallback) => {
  const value = process.env[name] ?? fallback;
  if (value === undefined) throw new Error(`${name} is not set`);
  return value;
};

const base = env('BOARD_BASE');
const slug = env('BOARD_SLUG');
const boardToken = env('BOARD_TOKEN');
const publisherToken = env('PUBLISHER_TOKEN');
const expect = JSON.parse(env('BOARD_EXPECT'));
const screenshot = env('SCREENSHOT');
const executablePath = env('CHROMIUM', '/usr/bin/chromium');

/** Every wait in the test ends within this. */
const WAIT_MS = 15000;

function check(condition, message) {
  if (!condition) throw new Error(message);
}

/** The text a tile shows as its figure, once the page has drawn it. */
async function tileShows(page, measure) {
  return page.$eval(`.tile[data-measure="${measure}"] .tile__value`, (node) => node.dataset.shown);
}

async function checkTiles(page, tiles) {
  for (const [measure, shown] of Object.entries(tiles)) {
    const actual = await tileShows(page, measure);
    check(actual === shown, `tile ${measure} shows ${JSON.stringify(actual)}, expected ${JSON.stringify(shown)}`);
    if (shown === 'Hidden') {
      const marked = await page.$eval(`.tile[data-measure="${measure}"] .tile__value`, (node) => node.hasAttribute('data-suppressed'));
      check(marked, `tile ${measure} is hidden but not marked as suppressed`);
    }
  }
}

/** No page-wide horizontal scrolling at `width` pixels. */
async function checkNoHorizontalScroll(page, width) {
  await page.setViewportSize({ width, height: 900 });
  await page.waitForTimeout(300);
  const [scrollWidth, clientWidth] = await page.evaluate(() => [
    document.documentElement.scrollWidth, document.documentElement.clientWidth,
  ]);
  check(scrollWidth <= clientWidth, `the page scrolls sideways at ${width} px: ${scrollWidth} > ${clientWidth}`);
}

async function post(events) {
  const response = await fetch(`${base}/v1/events`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${publisherToken}`, 'Content-Type': 'application/cloudevents-batch+json' },
    body: JSON.stringify(events),
  });
  const body = await response.text();
  check(response.status === 200, `POST /v1/events answered ${response.status}: ${body}`);
  const statuses = JSON.parse(body).results.map((receipt) => receipt.status);
  check(statuses.every((status) => status === 'accepted'), `not every live event was accepted: ${body}`);
}

async function run(page) {
  const problems = [];
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console error: ${message.text()}`);
  });
  page.on('response', (answer) => {
    if (answer.status() >= 400) problems.push(`${answer.request().method()} ${answer.url()} answered ${answer.status()}`);
  });

  const response = await page.goto(`${base}/boards/${encodeURIComponent(slug)}?token=${encodeURIComponent(boardToken)}`);
  check(response && response.status() === 200, `the board page answered ${response && response.status()}`);

  // The first figures: wait for the page to draw them, then compare.
  const [firstMeasure, firstShown] = Object.entries(expect.tiles)[0];
  await page.waitForFunction(
    ([measure, shown]) => document.querySelector(`.tile[data-measure="${measure}"] .tile__value`)?.dataset.shown === shown,
    [firstMeasure, firstShown], { timeout: WAIT_MS },
  ).catch(async () => {
    throw new Error(`tile ${firstMeasure} never showed ${firstShown}; it shows ${JSON.stringify(await tileShows(page, firstMeasure).catch(() => null))}`);
  });
  await checkTiles(page, expect.tiles);

  // The token leaves the address bar once the page has it.
  check(!page.url().includes('token='), `the token is still in the address: ${page.url()}`);

  // Suppressed cells say so, and never read as zero.
  for (const pointer of expect.suppressed) {
    const cells = await page.$$eval(`[data-pointer="${pointer}"]`, (nodes) => nodes.map((node) => ({
      suppressed: node.hasAttribute('data-suppressed'),
      text: node.textContent.trim(),
    })));
    check(cells.length > 0, `no cell on the page shows ${pointer}`);
    for (const cell of cells) {
      check(cell.suppressed, `${pointer} is suppressed in the JSON but shown as ${JSON.stringify(cell.text)}`);
      check(cell.text !== '0' && /\[c\]|Hidden/.test(cell.text), `${pointer} reads ${JSON.stringify(cell.text)}`);
    }
  }

  // The pipeline is a table with a row per stage.
  const stages = await page.$$eval('#pipeline-body tr', (rows) => rows.map((row) => row.dataset.stage));
  check(stages.length === 5, `the pipeline has ${stages.length} stages`);

  // The chart is drawn, and its figures are in a table as well.
  const chartDrawn = await page.evaluate(() => {
    const canvas = document.getElementById('chart');
    return Boolean(window.Chart && window.Chart.getChart(canvas)) && canvas.width > 0 && canvas.height > 0;
  });
  check(chartDrawn, 'the monthly chart was not drawn');
  const monthRows = await page.$$eval('#monthly-body tr', (rows) => rows.length);
  check(monthRows > 0, 'the monthly table is empty');

  for (const [rule, count] of Object.entries(expect.flags)) {
    const shown = await page.$eval(`.flag-group[data-rule="${rule}"] .flag-group__count`, (node) => node.dataset.count)
      .catch(() => null);
    check(shown === String(count), `flags for ${rule}: ${shown}, expected ${count}`);
  }

  // A board token sees no exception in detail.
  const pageText = await page.evaluate(() => document.body.innerText);
  for (const text of expect.forbidden_text || []) {
    check(!pageText.includes(text), `the page shows ${text} to a board token`);
  }
  const details = await page.$$eval('.flag-meta, .flag-list', (nodes) => nodes.length);
  check(details === 0, `the page lists ${details} exceptions in detail to a board token`);

  await checkNoHorizontalScroll(page, 390);
  await checkNoHorizontalScroll(page, 1280);

  // Live: the feed is connected, new events arrive, the page follows them
  // without reloading.
  await page.waitForSelector('#live[data-state="live"]', { timeout: WAIT_MS }).catch(async () => {
    const state = await page.$eval('#live', (node) => node.dataset.state);
    const why = state === 'polling'
      ? ': GET /v1/events/live refused the board token, so the page fell back to polling'
      : '';
    throw new Error(`the live indicator never showed "live"; it shows "${state}"${why}`);
  });
  await page.evaluate(() => { window.boardTestMarker = 'still the same page'; });
  await post(expect.live_events);
  for (const [measure, shown] of Object.entries(expect.live_tiles)) {
    await page.waitForFunction(
      ([m, s]) => document.querySelector(`.tile[data-measure="${m}"] .tile__value`)?.dataset.shown === s,
      [measure, shown], { timeout: WAIT_MS },
    ).catch(async () => {
      throw new Error(`after the live events, tile ${measure} shows ${JSON.stringify(await tileShows(page, measure))}, expected ${JSON.stringify(shown)}`);
    });
  }
  const sameDocument = await page.evaluate(() => window.boardTestMarker === 'still the same page');
  check(sameDocument, 'the page reloaded instead of updating in place');
  await page.waitForFunction(() => document.getElementById('announcer').textContent.includes('updated'), null, { timeout: WAIT_MS })
    .catch(() => { throw new Error('the update was not announced to screen readers'); });

  // Let the update highlight fade before the picture is taken.
  await page.waitForTimeout(2800);
  check(problems.length === 0, problems.join('\n'));
}

const profile = mkdtempSync(join(tmpdir(), 'rotation-board-chromium-'));
let context;
let failure = null;
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    viewport: { width: 1280, height: 900 },
    args: [
      '--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
  const page = context.pages()[0] ?? await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  try {
    await run(page);
  } catch (error) {
    failure = error;
  }
  mkdirSync(dirname(screenshot), { recursive: true });
  await page.screenshot({ path: screenshot, fullPage: true }).catch((error) => {
    failure = failure ?? error;
  });
} catch (error) {
  failure = error;
} finally {
  await context?.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}

if (failure) {
  console.error(`board page test failed: ${failure.message}`);
  console.error(`screenshot: ${screenshot}`);
  process.exit(1);
}
console.log(`board page test passed; screenshot: ${screenshot}`);
