// The board page: fetches the partnership's protected dashboard
// (GET /v1/partnerships/<slug>/dashboard), draws it, and follows the
// ledger's live feed (GET /v1/events/live, Server-Sent Events) to fetch it
// again whenever something is committed. No framework and no build step:
// the page must keep working for years on whatever browser a board member
// has, and must be readable without the chart.
//
// Every figure is drawn from the JSON with textContent, never as HTML, so
// that nothing in the data can become markup.

'use strict';

(() => {
  /** At most one dashboard fetch per this many milliseconds. */
  const REFRESH_INTERVAL_MS = 1000;
  /** When the live feed is refused, how often to fetch the figures instead. */
  const POLL_INTERVAL_MS = 30000;
  /** Reconnection back-off bounds for the live feed. */
  const RETRY_MIN_MS = 1000;
  const RETRY_MAX_MS = 30000;
  /** How long to wait before asking again after a failed fetch. */
  const ERROR_RETRY_MS = 5000;
  /** How many times to ask again when the dashboard lags the feed. */
  const CATCH_UP_ATTEMPTS = 10;
  /** Flags listed per rule before the list is cut short. */
  const FLAGS_LISTED = 200;

  const numbers = new Intl.NumberFormat('en-GB');
  const percent = new Intl.NumberFormat('en-GB', { style: 'percent', maximumFractionDigits: 0 });
  const dateTime = new Intl.DateTimeFormat('en-GB', {
    day: 'numeric', month: 'long', year: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit',
  });
  const clock = new Intl.DateTimeFormat('en-GB', { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  const monthName = new Intl.DateTimeFormat('en-GB', { month: 'short', year: 'numeric', timeZone: 'UTC' });
  const reducedMotion = window.matchMedia('(prefers-reduced-motion: reduce)');

  // ----- Words for the codes in the JSON --------------------------------

  /** SIC 2007 sections in plain words. */
  const SECTORS = {
    A: 'Farming, forestry and fishing',
    B: 'Mining and quarrying',
    C: 'Manufacturing',
    D: 'Energy supply',
    E: 'Water, sewerage and waste',
    F: 'Construction',
    G: 'Wholesale and retail, vehicle repair',
    H: 'Transport and storage',
    I: 'Accommodation and food',
    J: 'Information and communication',
    K: 'Finance and insurance',
    L: 'Real estate',
    M: 'Professional, scientific and technical',
    N: 'Administrative and support services',
    O: 'Public administration and defence',
    P: 'Education',
    Q: 'Health and social work',
    R: 'Arts, entertainment and recreation',
    S: 'Other services',
    T: 'Households as employers',
    U: 'International organisations',
    unknown: 'Sector not known',
  };

  /** The `by_group` dimensions, in the order shown, with their categories. */
  const GROUPS = [
    ['age_band', 'Age when referred', [
      ['16-24', '16 to 24'], ['25-49', '25 to 49'], ['50+', '50 and over'], ['not_recorded', 'Not recorded'],
    ]],
    ['sex', 'Sex', [
      ['female', 'Female'], ['male', 'Male'], ['other', 'Other'],
      ['prefer_not_to_say', 'Prefer not to say'], ['not_recorded', 'Not recorded'],
    ]],
    ['disability', 'Disability', [
      ['yes', 'Disabled'], ['no', 'Not disabled'],
      ['prefer_not_to_say', 'Prefer not to say'], ['not_recorded', 'Not recorded'],
    ]],
    ['ethnicity', 'Ethnic group', [
      ['asian', 'Asian'], ['black', 'Black'], ['mixed', 'Mixed'], ['white', 'White'],
      ['other', 'Other ethnic group'], ['prefer_not_to_say', 'Prefer not to say'], ['not_recorded', 'Not recorded'],
    ]],
    ['lone_parent', 'Lone parent', [
      ['yes', 'Lone parent'], ['no', 'Not a lone parent'], ['not_recorded', 'Not recorded'],
    ]],
  ];

  /** The columns of each `by_group` table, with the total each adds up to. */
  const GROUP_COLUMNS = [
    ['referred', 'Referred', 'jobseekers_referred'],
    ['eligible', 'Eligible', 'jobseekers_eligible'],
    ['preparation_completed', 'Prepared', 'preparation_completed'],
    ['placed', 'Placed', 'jobseekers_placed'],
    ['into_work', 'Into work', 'substitutes_into_work'],
  ];

  const SECTOR_COLUMNS = [
    'employers_enrolled', 'rotations_agreed', 'releases_started',
    'training_completed', 'training_left', 'substitutions_started',
  ];

  /** The monthly series: JSON key, total key, label and line style. */
  const SERIES = [
    { key: 'referrals', total: 'jobseekers_referred', label: 'Referrals', colour: '#1d70b8', dash: [], point: 'circle' },
    { key: 'releases_started', total: 'releases_started', label: 'Released for training', colour: '#a8480f', dash: [8, 4], point: 'rect' },
    { key: 'substitutions_started', total: 'substitutions_started', label: 'Substitutions started', colour: '#00703c', dash: [], point: 'triangle' },
    { key: 'training_completed', total: 'training_completed', label: 'Training completed', colour: '#4c2c92', dash: [2, 3], point: 'rectRot' },
    { key: 'progressions', total: 'progressions', label: 'Progressions', colour: '#b52e7a', dash: [12, 4, 2, 4], point: 'crossRot' },
  ];

  /** The headline tiles, by list. `note` returns the line under the figure. */
  const TILES = [
    {
      key: 'jobseekers_referred', label: 'People referred', list: 'tiles-people',
      note: () => [text('jobseekers referred to the scheme')],
    },
    {
      key: 'jobseekers_placed', label: 'Placed as substitutes', list: 'tiles-people',
      note: (d) => [text('Working as substitutes now: '), figure(d.totals.substitutions_active, '/totals/substitutions_active', d)],
    },
    {
      key: 'substitutes_into_work', label: 'Into work', list: 'tiles-people',
      note: (d) => rateNote(d.rates.substitute_into_work_rate, 'of ended placements led to work', 'Share into work'),
    },
    {
      key: 'releases_started', label: 'Released for training', list: 'tiles-employees',
      note: (d) => [text('In training now: '), figure(d.totals.releases_active, '/totals/releases_active', d)],
    },
    {
      key: 'training_completed', label: 'Training completed', list: 'tiles-employees',
      note: (d) => rateNote(d.rates.training_completion_rate, 'completion rate', 'Completion rate'),
    },
    {
      key: 'progressions', label: 'Progressions', list: 'tiles-employees',
      note: () => [text('promotions, pay rises, new roles and jobs, for employees and substitutes')],
    },
  ];

  /** The pipeline stages, in order. */
  const STAGES = [
    ['jobseekers_referred', 'Referred', 'to the scheme'],
    ['jobseekers_eligible', 'Eligible', 'assessed as eligible'],
    ['preparation_completed', 'Prepared', 'completed pre-employment training'],
    ['jobseekers_placed', 'Placed as substitutes', 'started paid work as a substitute'],
    ['substitutes_into_work', 'Into work', 'in work after their placement'],
  ];

  /** Scheme rules: a short title and why the rule exists, given the limits. */
  const RULES = {
    min_unemployed_weeks: {
      title: (l) => `Substitute unemployed for fewer than ${l.min_unemployed_weeks ?? 26} weeks`,
      why: (l) => `The scheme is for people who have been out of work for at least ${l.min_unemployed_weeks ?? 26} weeks.`,
    },
    max_substitution_weeks: {
      title: (l) => `Placement longer than ${l.max_substitution_weeks ?? 26} weeks`,
      why: (l) => `A substitute placement should last at most ${l.max_substitution_weeks ?? 26} weeks.`,
    },
    hour_for_hour: {
      title: () => 'Hours not matched hour for hour',
      why: () => 'A substitute should work the same weekly hours as the employees they cover spend in training.',
    },
  };

  // ----- Small DOM helpers -----------------------------------------------

  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === 'class') node.className = value;
      else node.setAttribute(name, value === true ? '' : String(value));
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const text = (s) => document.createTextNode(s);

  /** JSON pointer escaping (RFC 6901) of one key. */
  const escapeKey = (key) => String(key).replace(/~/g, '~0').replace(/\//g, '~1');

  /**
   * A count as a node: the number, or the hidden marker when the JSON
   * holds `null` (a suppressed cell), or "not available" when the count is
   * missing altogether.
   */
  function figure(value, pointer, dashboard) {
    if (typeof value === 'number') {
      return el('span', { 'data-pointer': pointer }, numbers.format(value));
    }
    if (value === null || (dashboard && dashboard.hidden.has(pointer))) {
      return el('span', { class: 'suppressed', 'data-pointer': pointer, 'data-suppressed': true },
        el('span', { 'aria-hidden': 'true' }, '[c]'),
        el('span', { class: 'visually-hidden' }, 'hidden'));
    }
    return el('span', { class: 'not-available', 'data-pointer': pointer },
      el('span', { 'aria-hidden': 'true' }, '–'),
      el('span', { class: 'visually-hidden' }, 'not available'));
  }

  function rateNote(rate, words, name) {
    if (typeof rate === 'number') {
      return [el('strong', {}, percent.format(rate)), text(` ${words}`)];
    }
    return [text(`${name} not shown: too few people to publish safely`)];
  }

  function numberCell(value, pointer, dashboard) {
    return el('td', { class: 'num' }, figure(value, pointer, dashboard));
  }

  function replaceChildren(node, ...children) {
    node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined));
  }

  // ----- Access -----------------------------------------------------------

  const slug = (() => {
    const parts = location.pathname.split('/').filter(Boolean);
    return decodeURIComponent(parts[parts.length - 1] || '');
  })();

  /**
   * The board's token: taken from `?token=` once, kept for this tab only,
   * and removed from the address bar so that it does not end up in
   * bookmarks, screenshots or shared screens.
   */
  const token = (() => {
    const key = `rotation-ledger.board-token.${slug}`;
    const url = new URL(location.href);
    let value = url.searchParams.get('token');
    if (value) {
      try { sessionStorage.setItem(key, value); } catch (_) { /* storage may be disabled */ }
      url.searchParams.delete('token');
      history.replaceState(history.state, '', url.pathname + url.search + url.hash);
    } else {
      try { value = sessionStorage.getItem(key); } catch (_) { value = null; }
    }
    return value;
  })();

  const authHeaders = () => (token ? { Authorization: `Bearer ${token}` } : {});

  class AccessError extends Error {}

  /** A fetch that failed for now; `retryMs` says when to ask again. */
  class PassingError extends Error {
    constructor(title, message, retryMs) {
      super(message);
      this.title = title;
      this.retryMs = retryMs;
    }
  }

  async function fetchDashboard() {
    const response = await fetch(`/v1/partnerships/${encodeURIComponent(slug)}/dashboard`, {
      headers: { ...authHeaders(), Accept: 'application/json' },
      cache: 'no-store',
    });
    if (response.status === 401 || response.status === 403) {
      throw new AccessError(`HTTP ${response.status}`);
    }
    if (response.status === 404) {
      throw new PassingError('No figures yet',
        'Nothing has been recorded for this partnership yet. The figures appear here as soon as something is.',
        ERROR_RETRY_MS);
    }
    if (response.status === 503) {
      const seconds = Number(response.headers.get('Retry-After'));
      throw new PassingError('The figures are being prepared',
        'The ledger is bringing the figures up to date after a restart. They appear here in a moment.',
        Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : 2000);
    }
    if (!response.ok) {
      throw new PassingError('The figures could not be updated',
        `The ledger answered with an error (${response.status}). The figures shown may be out of date; the page keeps trying.`,
        ERROR_RETRY_MS);
    }
    return response.json();
  }

  // ----- Status: problem banner, live indicator, announcements ----------

  function showProblem(title, message) {
    $('problem-title').textContent = title;
    $('problem-text').textContent = message;
    $('problem').hidden = false;
  }

  function clearProblem() {
    $('problem').hidden = true;
  }

  const LIVE_WORDS = {
    connecting: 'Connecting',
    live: 'Live',
    reconnecting: 'Reconnecting',
    polling: 'Updates every 30 seconds',
    offline: 'Not updating',
  };

  function setLive(state) {
    const indicator = $('live');
    if (indicator.dataset.state === state) return;
    indicator.dataset.state = state;
    $('live-text').textContent = LIVE_WORDS[state];
    indicator.title = {
      connecting: 'Connecting to the live feed',
      live: 'Connected: the figures update when something is recorded',
      reconnecting: 'The live feed was interrupted; trying again',
      polling: 'The live feed is not available to this link; the figures are fetched every 30 seconds',
      offline: 'The figures are not updating',
    }[state];
  }

  function announce(message) {
    const region = $('announcer');
    // Clearing first makes screen readers read a repeated message again.
    region.textContent = '';
    window.setTimeout(() => { region.textContent = message; }, 50);
  }

  // ----- Drawing ------------------------------------------------------------

  let current = null;
  let chart = null;

  function render(data) {
    const dashboard = { ...data, hidden: new Set(data.suppressed || []) };
    dashboard.totals = data.totals || {};
    dashboard.rates = data.rates || {};
    dashboard.limits = data.limits || {};
    const previous = current;
    current = dashboard;

    renderHeading(dashboard);
    const changes = renderTiles(dashboard, previous);
    renderPipeline(dashboard);
    renderOutcomes(dashboard);
    renderMonthly(dashboard);
    renderSectors(dashboard);
    renderGroups(dashboard);
    renderFlags(dashboard);
    renderAbout(dashboard);

    markScrollable();

    if (previous && changes.length > 0) {
      announce(`Figures updated. ${changes.join('. ')}.`);
    }
  }

  /**
   * A table wider than its frame scrolls; only then is the frame a
   * keyboard-focusable, named region, so that keyboard users can scroll it
   * and nobody tabs through frames that do not move.
   */
  function markScrollable() {
    for (const frame of document.querySelectorAll('.table-wrap')) {
      const scrolls = frame.scrollWidth > frame.clientWidth + 1;
      if (scrolls) {
        frame.setAttribute('role', 'region');
        frame.setAttribute('tabindex', '0');
      } else {
        frame.removeAttribute('role');
        frame.removeAttribute('tabindex');
      }
    }
  }

  function renderHeading(d) {
    const code = d.partnership || slug;
    // The dashboard names the partnership when the server adds its
    // registered name; until then the slug, in words, stands in.
    const name = d.name || d.partnership_name || code.split('-').map((w) => w.charAt(0).toUpperCase() + w.slice(1)).join(' ');
    $('title').textContent = name;
    $('caption').textContent = `Job rotation partnership · ${code}`;
    document.title = `${name} – Partnership board – Rotation Ledger`;

    const asOf = d.as_of || {};
    const recorded = asOf.recordedtime ? new Date(asOf.recordedtime) : null;
    const parts = [];
    if (recorded && !Number.isNaN(recorded.getTime())) {
      parts.push(el('span', {}, 'Figures as of '), el('time', { datetime: asOf.recordedtime }, dateTime.format(recorded)));
    } else {
      parts.push(el('span', {}, 'No events recorded yet'));
    }
    if (typeof asOf.position === 'number') {
      parts.push(el('span', { class: 'as-of__position', 'data-position': asOf.position },
        ` · ledger entry ${numbers.format(asOf.position)}`));
    }
    parts.push(el('span', { class: 'as-of__checked' }, ` · checked ${clock.format(new Date())}`));
    replaceChildren($('as-of'), parts);
  }

  function renderTiles(d, previous) {
    const changes = [];
    for (const tile of TILES) {
      const list = $(tile.list);
      let item = list.querySelector(`[data-measure="${tile.key}"]`);
      if (!item) {
        // The label comes before the figure, so that a screen reader says
        // what a number counts before saying the number.
        item = el('li', { class: 'tile', 'data-measure': tile.key },
          el('p', { class: 'tile__label' }, tile.label),
          el('p', { class: 'tile__value' }),
          el('p', { class: 'tile__note' }));
        list.append(item);
      }
      const value = d.totals[tile.key];
      const pointer = `/totals/${tile.key}`;
      const valueNode = item.querySelector('.tile__value');
      const suppressed = value === null || d.hidden.has(pointer);
      const shown = typeof value === 'number' ? numbers.format(value) : suppressed ? 'Hidden' : '–';
      const before = valueNode.dataset.shown;
      valueNode.dataset.shown = shown;
      valueNode.dataset.pointer = pointer;
      valueNode.toggleAttribute('data-suppressed', suppressed);
      if (suppressed) {
        replaceChildren(valueNode, text('Hidden'), el('span', { class: 'visually-hidden' }, ' to protect privacy'));
      } else {
        valueNode.textContent = shown;
      }
      replaceChildren(item.querySelector('.tile__note'), tile.note(d));

      if (previous && before !== undefined && before !== shown) {
        changes.push(`${tile.label}: ${suppressed ? 'hidden' : shown}`);
        flash(item);
      }
    }
    return changes;
  }

  function flash(node) {
    if (reducedMotion.matches) return;
    node.classList.remove('is-updated');
    // Reading layout restarts the animation when the class comes back.
    void node.offsetWidth;
    node.classList.add('is-updated');
  }

  function renderPipeline(d) {
    const values = STAGES.map(([key]) => d.totals[key]);
    const largest = Math.max(1, ...values.filter((v) => typeof v === 'number'));
    const rows = STAGES.map(([key, label, hint], i) => {
      const value = values[i];
      const pointer = `/totals/${key}`;
      const bar = el('span', { class: 'funnel__bar' });
      if (typeof value === 'number') {
        bar.style.width = `${(100 * value) / largest}%`;
        if (value === 0) bar.style.minWidth = '0';
      } else {
        bar.setAttribute('data-suppressed', '');
      }
      return el('tr', { 'data-stage': key },
        el('th', { scope: 'row' }, label, el('span', { class: 'hint' }, hint)),
        numberCell(value, pointer, d),
        el('td', { 'aria-hidden': 'true' }, el('span', { class: 'funnel__track' }, bar)));
    });
    replaceChildren($('pipeline-body'), rows);
  }

  function pairRow(label, node, hint) {
    return el('tr', {},
      el('th', { scope: 'row' }, label, hint ? el('span', { class: 'hint' }, hint) : null),
      el('td', {}, node));
  }

  function rateFigure(rate, pointer) {
    if (typeof rate === 'number') return el('span', { 'data-pointer': pointer }, percent.format(rate));
    return el('span', { class: 'not-available', 'data-pointer': pointer }, 'not shown');
  }

  function renderOutcomes(d) {
    const t = d.totals;
    const count = (key) => figure(t[key], `/totals/${key}`, d);
    replaceChildren($('training-body'),
      pairRow('Released for training', count('releases_started')),
      pairRow('In training now', count('releases_active')),
      pairRow('Completed their training', count('training_completed')),
      pairRow('Left before completing', count('training_left')),
      pairRow('Completion rate', rateFigure(d.rates.training_completion_rate, '/rates/training_completion_rate'),
        'of those who completed or left'));
    replaceChildren($('placements-body'),
      pairRow('Substitutions started', count('substitutions_started')),
      pairRow('Working as substitutes now', count('substitutions_active')),
      pairRow('Completed their placement', count('substitutions_completed')),
      pairRow('Hired by the employer', count('substitutes_hired_by_employer')),
      pairRow('Left early', count('substitutions_left_early')),
      pairRow('Dismissed', count('substitutions_dismissed')),
      pairRow('Into work', rateFigure(d.rates.substitute_into_work_rate, '/rates/substitute_into_work_rate'),
        'of ended placements, within 6 months'));
    replaceChildren($('scheme-body'),
      pairRow('Employers taking part', count('employers_enrolled')),
      pairRow('Rotations agreed', count('rotations_agreed')),
      pairRow('Progressions', count('progressions'), 'employees and substitutes'),
      pairRow('Mentoring sessions', count('mentoring_sessions')));
  }

  function monthLabel(month) {
    const match = /^(\d{4})-(\d{2})$/.exec(month || '');
    if (!match) return month || '';
    return monthName.format(new Date(Date.UTC(Number(match[1]), Number(match[2]) - 1, 1)));
  }

  /**
   * The monthly rows with the months between them that had no events put
   * back as zeros (the dashboard leaves them out), each row keeping the
   * index of its JSON row for the cells' pointers.
   */
  function everyMonth(rows) {
    const out = [];
    let previous = null;
    rows.forEach((row, index) => {
      const match = /^(\d{4})-(\d{2})$/.exec(row.month || '');
      if (match && previous) {
        let year = previous[0];
        let month = previous[1];
        for (let guard = 0; guard < 1200; guard += 1) {
          month += 1;
          if (month > 12) { month = 1; year += 1; }
          if (year > Number(match[1]) || (year === Number(match[1]) && month >= Number(match[2]))) break;
          const empty = { month: `${year}-${String(month).padStart(2, '0')}` };
          for (const s of SERIES) empty[s.key] = 0;
          out.push({ row: empty, index: null });
        }
      }
      out.push({ row, index });
      if (match) previous = [Number(match[1]), Number(match[2])];
    });
    return out;
  }

  function renderMonthly(d) {
    const rows = everyMonth(Array.isArray(d.monthly) ? d.monthly : []);
    replaceChildren($('monthly-body'), rows.map(({ row, index }) =>
      el('tr', {},
        el('th', { scope: 'row' }, monthLabel(row.month)),
        SERIES.map((s) => numberCell(row[s.key], index === null ? null : `/monthly/${index}/${s.key}`, d)))));
    replaceChildren($('monthly-foot'),
      el('tr', {},
        el('th', { scope: 'row' }, 'All months'),
        SERIES.map((s) => numberCell(d.totals[s.total], `/totals/${s.total}`, d))));
    if (rows.length === 0) {
      replaceChildren($('monthly-body'), el('tr', {}, el('td', { colspan: 6 }, 'Nothing recorded yet.')));
    }
    drawChart(rows.map(({ row }) => row));
  }

  /** Draws or updates the chart; on any failure the table stands alone. */
  function drawChart(rows) {
    if (typeof window.Chart !== 'function') {
      chartFailed();
      return;
    }
    const labels = rows.map((row) => monthLabel(row.month));
    const series = SERIES.map((s) => rows.map((row) => (typeof row[s.key] === 'number' ? row[s.key] : null)));
    try {
      if (chart) {
        chart.data.labels = labels;
        chart.data.datasets.forEach((set, i) => { set.data = series[i]; });
        chart.update('none');
        return;
      }
      const font = getComputedStyle(document.body).fontFamily;
      window.Chart.defaults.font.family = font;
      window.Chart.defaults.font.size = 14;
      window.Chart.defaults.color = '#0b0c0c';
      chart = new window.Chart($('chart'), {
        type: 'line',
        data: {
          labels,
          datasets: SERIES.map((s, i) => ({
            label: s.label,
            data: series[i],
            borderColor: s.colour,
            backgroundColor: s.colour,
            borderDash: s.dash,
            borderWidth: 2.5,
            pointStyle: s.point,
            pointRadius: 4,
            pointHoverRadius: 6,
            spanGaps: false,
            tension: 0,
          })),
        },
        options: {
          responsive: true,
          maintainAspectRatio: false,
          animation: reducedMotion.matches ? false : { duration: 400 },
          interaction: { mode: 'index', intersect: false },
          plugins: {
            legend: {
              position: 'top',
              align: 'start',
              labels: { usePointStyle: true, boxWidth: 8, boxHeight: 8, padding: 16 },
            },
            tooltip: {
              callbacks: {
                label: (item) => `${item.dataset.label}: ${item.raw === null ? 'hidden' : numbers.format(item.raw)}`,
              },
            },
          },
          scales: {
            x: { grid: { display: false }, ticks: { maxRotation: 0, autoSkipPadding: 12 } },
            y: {
              beginAtZero: true,
              grid: { color: '#dddddd' },
              ticks: { precision: 0, callback: (v) => numbers.format(v) },
              title: { display: true, text: 'Number in the month' },
            },
          },
        },
      });
    } catch (error) {
      console.error('the chart could not be drawn', error);
      chartFailed();
    }
  }

  function chartFailed() {
    $('chart-figure').classList.add('chart--failed');
    $('chart-note').hidden = false;
    $('monthly-details').open = true;
  }

  function sectorOrder(a, b) {
    if (a === 'unknown') return 1;
    if (b === 'unknown') return -1;
    return a.localeCompare(b);
  }

  function renderSectors(d) {
    const sectors = d.by_sector && typeof d.by_sector === 'object' ? d.by_sector : {};
    const keys = Object.keys(sectors).sort(sectorOrder);
    const rows = keys.map((key) => el('tr', { 'data-sector': key },
      el('th', { scope: 'row' },
        key === 'unknown' ? SECTORS.unknown : `${key} · ${SECTORS[key] || 'Section ' + key}`),
      SECTOR_COLUMNS.map((column) => numberCell(sectors[key][column], `/by_sector/${escapeKey(key)}/${column}`, d))));
    if (rows.length === 0) {
      rows.push(el('tr', {}, el('td', { colspan: 1 + SECTOR_COLUMNS.length }, 'No employers or rotations recorded yet.')));
    }
    replaceChildren($('sector-body'), rows);
    replaceChildren($('sector-foot'), el('tr', {},
      el('th', { scope: 'row' }, 'All sectors'),
      SECTOR_COLUMNS.map((column) => numberCell(d.totals[column], `/totals/${column}`, d))));
  }

  function renderGroups(d) {
    const groups = d.by_group && typeof d.by_group === 'object' ? d.by_group : {};
    const tables = GROUPS.filter(([dimension]) => groups[dimension]).map(([dimension, title, known]) => {
      const categories = groups[dimension];
      // Categories the page does not know yet are shown under their own name.
      const order = known.filter(([key]) => key in categories)
        .concat(Object.keys(categories).filter((key) => !known.some(([k]) => k === key)).map((key) => [key, key]));
      const captionId = `group-${dimension}-caption`;
      return el('div', { class: 'table-wrap', 'aria-labelledby': captionId },
        el('table', { class: 'table table--groups', 'data-dimension': dimension },
          el('caption', { id: captionId }, title),
          el('thead', {}, el('tr', {},
            el('th', { scope: 'col' }, 'Group'),
            GROUP_COLUMNS.map(([, label]) => el('th', { scope: 'col', class: 'num' }, label)))),
          el('tbody', {}, order.map(([key, label]) => el('tr', { 'data-category': key },
            el('th', { scope: 'row' }, label),
            GROUP_COLUMNS.map(([column]) => numberCell(categories[key][column],
              `/by_group/${escapeKey(dimension)}/${escapeKey(key)}/${column}`, d))))),
          el('tfoot', {}, el('tr', {},
            el('th', { scope: 'row' }, 'All'),
            GROUP_COLUMNS.map(([, , total]) => numberCell(d.totals[total], `/totals/${total}`, d))))));
    });
    replaceChildren($('groups'), tables);
  }

  function renderFlags(d) {
    const flags = Array.isArray(d.flags) ? d.flags : [];
    // A board sees counts per rule and month; only an admin's raw view
    // lists each exception.
    if (flags.length > 0 && !('message' in flags[0])) {
      renderFlagCounts(d, flags);
      return;
    }
    const container = $('flags');
    const open = new Set([...container.querySelectorAll('details[open]')].map((node) => node.dataset.rule));
    if (flags.length === 0) {
      replaceChildren(container, el('p', { class: 'flags-none' }, 'No exceptions: every placement so far is within the scheme\u2019s rules.'));
      return;
    }
    const byRule = new Map();
    for (const flag of flags) {
      if (!byRule.has(flag.rule)) byRule.set(flag.rule, []);
      byRule.get(flag.rule).push(flag);
    }
    const order = Object.keys(RULES).filter((rule) => byRule.has(rule))
      .concat([...byRule.keys()].filter((rule) => !(rule in RULES)));
    const rotations = new Set(flags.map((flag) => flag.rotation)).size;
    const groups = order.map((rule) => {
      const list = byRule.get(rule);
      const words = RULES[rule] || { title: () => rule.replace(/_/g, ' '), why: () => '' };
      const items = list.slice(0, FLAGS_LISTED).map((flag) => el('li', {},
        el('p', {}, flag.message),
        el('p', { class: 'flag-meta' },
          'Rotation ', el('code', {}, flag.rotation), ' · substitution ', el('code', {}, flag.substitution))));
      const more = list.length > FLAGS_LISTED
        ? el('p', {}, `and ${numbers.format(list.length - FLAGS_LISTED)} more.`)
        : null;
      return el('details', { class: 'flag-group', 'data-rule': rule, open: open.has(rule) },
        el('summary', {},
          words.title(d.limits),
          el('span', { class: 'flag-group__count', 'data-count': list.length },
            numbers.format(list.length),
            el('span', { class: 'visually-hidden' }, list.length === 1 ? ' placement' : ' placements'))),
        el('p', { class: 'flag-group__why' }, words.why(d.limits)),
        el('ol', { class: 'flag-list' }, items),
        more);
    });
    replaceChildren(container,
      el('p', { class: 'flags-summary' },
        `${numbers.format(flags.length)} ${flags.length === 1 ? 'exception' : 'exceptions'} in ${numbers.format(rotations)} ${rotations === 1 ? 'rotation' : 'rotations'}.`),
      groups);
  }

  /** Exceptions as a board sees them: counts per rule and month, under the same protection as every other count. */
  function renderFlagCounts(d, counts) {
    const container = $('flags');
    const byRule = new Map();
    for (const cell of counts) {
      if (!byRule.has(cell.rule)) byRule.set(cell.rule, []);
      byRule.get(cell.rule).push(cell);
    }
    const order = Object.keys(RULES).filter((rule) => byRule.has(rule))
      .concat([...byRule.keys()].filter((rule) => !(rule in RULES)));
    const groups = order.map((rule) => {
      const cells = byRule.get(rule);
      const words = RULES[rule] || { title: () => rule.replace(/_/g, ' '), why: () => '' };
      const hidden = cells.some((cell) => cell.count === null);
      const total = cells.reduce((sum, cell) => sum + (cell.count || 0), 0);
      const shown = hidden && total === 0 ? '[c]' : numbers.format(total) + (hidden ? ' or more' : '');
      return el('details', { class: 'flag-group', 'data-rule': rule },
        el('summary', {},
          words.title(d.limits),
          el('span', { class: 'flag-group__count', 'data-count': hidden && total === 0 ? 'hidden' : String(total) }, shown)),
        el('p', { class: 'flag-group__why' }, words.why(d.limits)),
        el('table', { class: 'flag-months' },
          el('thead', {}, el('tr', {}, el('th', { scope: 'col' }, 'Month started'), el('th', { scope: 'col' }, 'Placements'))),
          el('tbody', {}, cells.map((cell) => el('tr', {},
            el('th', { scope: 'row' }, cell.month === null ? 'Not published yet' : cell.month),
            el('td', {}, cell.count === null ? '[c]' : numbers.format(cell.count)))))));
    });
    replaceChildren(container,
      el('p', { class: 'flags-summary' }, 'Placements outside the scheme\u2019s rules, counted by rule and by the month they started. Each exception in detail is for the scheme\u2019s administrators.'),
      groups);
  }

  function renderAbout(d) {
    const disclosure = d.disclosure || {};
    const threshold = disclosure.threshold;
    const rounding = disclosure.rounding;
    const hiddenCount = d.hidden.size;
    const parts = [];
    if (threshold > 1) {
      parts.push(`Counts from 1 to ${threshold - 1} are hidden, and so is any other count that could be used to work one of them out from a total.`);
      parts.push(`Rates are shown only when at least ${threshold} people are counted and no hidden count is part of them.`);
    }
    if (rounding > 1) {
      parts.push(`The other counts are rounded to the nearest ${rounding}, so parts may not add up exactly to their totals.`);
    }
    if (disclosure.method === 'cell_key') {
      parts.push(`Each table is updated only once at least ${disclosure.release_min_units} people or events have changed in it, so that no one can work out who has just joined a count by comparing two versions of the page. Until then the page shows the table as it last was.`);
      parts.push(`Before rounding, each count is moved by up to ${disclosure.max_perturbation} in a way fixed by the people it counts: figures never move when nothing has happened, and may move by a few when they do.`);
      const dates = Object.values(d.releases || {}).filter(Boolean).map((r) => r.date).sort();
      if (dates.length > 0) {
        parts.push(`The latest update was on ${new Date(dates[dates.length - 1]).toLocaleString('en-GB', { dateStyle: 'long', timeStyle: 'short' })}.`);
      }
    }
    if (parts.length > 0) {
      parts.push(`${numbers.format(hiddenCount)} ${hiddenCount === 1 ? 'count is' : 'counts are'} hidden on this page.`);
      $('about-disclosure').textContent = parts.join(' ');
    }
    $('key-rounding').textContent = rounding > 1
      ? `Counts are rounded to the nearest ${rounding}.`
      : 'Counts are exact.';
  }

  // ----- Refreshing -----------------------------------------------------

  let lastRefreshAt = 0;
  let refreshTimer = null;
  let refreshing = false;
  let refreshAgain = false;
  /** The highest position of an event of this partnership seen on the feed. */
  let wanted = 0;
  let catchUpAttempts = 0;
  /** Set when the page should stop asking the server (access refused). */
  let stopped = false;
  /** The last position the feed delivered; the next connection resumes after it. */
  let lastPosition = 0;

  /** Asks for a fresh dashboard, at most once per REFRESH_INTERVAL_MS. */
  function requestRefresh() {
    if (refreshing) {
      refreshAgain = true;
      return;
    }
    if (refreshTimer !== null) return;
    const wait = Math.max(0, lastRefreshAt + REFRESH_INTERVAL_MS - Date.now());
    refreshTimer = window.setTimeout(refresh, wait);
  }

  async function refresh() {
    refreshTimer = null;
    refreshing = true;
    lastRefreshAt = Date.now();
    try {
      const data = await fetchDashboard();
      render(data);
      clearProblem();
      // The figures may be folded a moment after the feed announces an
      // event; ask again until they include it.
      const position = data.as_of && typeof data.as_of.position === 'number' ? data.as_of.position : 0;
      if (position < wanted && catchUpAttempts < CATCH_UP_ATTEMPTS) {
        catchUpAttempts += 1;
        refreshAgain = true;
      } else {
        catchUpAttempts = 0;
      }
    } catch (error) {
      if (error instanceof AccessError) {
        showProblem('This link does not open these figures',
          'The access link has expired or is for another partnership. Ask the scheme\u2019s administrator for a new board link.');
        setLive('offline');
        stopped = true;
      } else if (error instanceof PassingError) {
        showProblem(error.title, error.message);
        window.setTimeout(requestRefresh, error.retryMs);
      } else {
        showProblem('The figures could not be updated',
          'The ledger could not be reached. The figures shown may be out of date; the page keeps trying.');
        window.setTimeout(requestRefresh, ERROR_RETRY_MS);
      }
    } finally {
      refreshing = false;
      if (refreshAgain && !stopped) {
        refreshAgain = false;
        requestRefresh();
      }
    }
  }

  // ----- The live feed ----------------------------------------------------

  const sleep = (ms) => new Promise((resolve) => { window.setTimeout(resolve, ms); });

  /**
   * Reads Server-Sent Events from a response body and calls `dispatch`
   * with `{type, data, id}` for each (the WHATWG EventSource parsing
   * rules). `onRetry` receives a `retry:` field's milliseconds.
   */
  async function readEvents(body, dispatch, onRetry) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    let type = '';
    let data = [];
    let id = null;
    let first = true;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      let chunk = buffer + value;
      if (first) {
        chunk = chunk.replace(/^\uFEFF/, '');
        first = false;
      }
      // A chunk ending in CR may be the first half of CRLF: keep it back.
      const end = chunk.endsWith('\r') ? chunk.length - 1 : chunk.length;
      const lines = chunk.slice(0, end).split(/\r\n|\r|\n/);
      buffer = lines.pop() + chunk.slice(end);
      for (const line of lines) {
        if (line === '') {
          if (data.length > 0) dispatch({ type: type || 'message', data: data.join('\n'), id });
          type = '';
          data = [];
          continue;
        }
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let fieldValue = colon < 0 ? '' : line.slice(colon + 1);
        if (fieldValue.startsWith(' ')) fieldValue = fieldValue.slice(1);
        if (field === 'event') type = fieldValue;
        else if (field === 'data') data.push(fieldValue);
        else if (field === 'id' && !fieldValue.includes('\0')) id = fieldValue;
        else if (field === 'retry' && /^\d+$/.test(fieldValue)) onRetry(Number(fieldValue));
      }
    }
  }

  function onLiveEvent(event) {
    if (event.type !== 'committed') return;
    const position = Number(event.id);
    if (Number.isSafeInteger(position) && position > lastPosition) lastPosition = position;
    // The feed carries every partnership's events; only this one's change
    // these figures. A payload without a partnership is taken as relevant.
    try {
      const committed = JSON.parse(event.data);
      if (committed && typeof committed.partnership === 'string' && committed.partnership !== slug) return;
    } catch (_) { /* not JSON: refresh anyway */ }
    if (Number.isSafeInteger(position) && position > wanted) wanted = position;
    requestRefresh();
  }

  async function follow() {
    let delay = RETRY_MIN_MS;
    let serverDelay = null;
    let connectedBefore = false;
    while (!stopped) {
      setLive(connectedBefore ? 'reconnecting' : 'connecting');
      try {
        const response = await fetch(`/v1/events/live?after=${lastPosition}`, {
          headers: { ...authHeaders(), Accept: 'text/event-stream' },
          cache: 'no-store',
        });
        if ([401, 403, 404, 405, 501].includes(response.status)) {
          // This link may read the figures but not follow the feed.
          setLive('polling');
          window.setInterval(requestRefresh, POLL_INTERVAL_MS);
          return;
        }
        if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
        setLive('live');
        if (connectedBefore) requestRefresh();
        connectedBefore = true;
        delay = RETRY_MIN_MS;
        await readEvents(response.body, onLiveEvent, (ms) => { serverDelay = ms; });
      } catch (error) {
        connectedBefore = connectedBefore || lastPosition > 0;
      }
      if (stopped) break;
      setLive('reconnecting');
      const wait = serverDelay ?? delay;
      await sleep(wait + Math.random() * 500);
      delay = Math.min(delay * 2, RETRY_MAX_MS);
    }
  }

  // ----- Start ----------------------------------------------------------

  async function start() {
    if (!slug) {
      showProblem('No partnership in the address', 'Open the page as /boards/<partnership>?token=<board token>.');
      setLive('offline');
      return;
    }
    if (!token) {
      showProblem('This page needs its access link',
        'Open the board with the link the scheme\u2019s administrator gave you; it ends in ?token=\u2026');
      setLive('offline');
      return;
    }
    // The feed resumes after the figures' position, so the figures come first:
    // following from position 0 would replay the whole ledger.
    // A failed first fetch schedules its own retry; wait for it to succeed.
    await refresh();
    while (!current && !stopped) await sleep(250);
    if (stopped) return;
    if (current && current.as_of && typeof current.as_of.position === 'number') {
      lastPosition = current.as_of.position;
    }
    follow();
  }

  let resizeTimer = null;
  window.addEventListener('resize', () => {
    window.clearTimeout(resizeTimer);
    resizeTimer = window.setTimeout(markScrollable, 200);
  });
  // The monthly table is measured when it is opened.
  document.getElementById('monthly-details').addEventListener('toggle', markScrollable);

  start();
})();
