// The Switchboard demo page: plain browser JavaScript over the `centrifuge`
// client (loaded before this file as the global `Centrifuge`).
/* global Centrifuge, document, location, fetch, URLSearchParams */
'use strict';

const params = new URLSearchParams(location.search);
const ROOM = `room:${params.get('room') || 'lobby'}`;
const PRICE_KEY = 'Product/123/price';

const $ = (id) => document.getElementById(id);

function showError(message) {
  $('error').textContent = message;
  $('error').hidden = !message;
}

/** WebSocket first, then HTTP-streaming, then SSE: the client moves on when one cannot open. */
function transports() {
  const ws = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}`;
  const all = [
    { transport: 'websocket', endpoint: `${ws}/connection/websocket` },
    { transport: 'http_stream', endpoint: `${location.origin}/connection/http_stream` },
    { transport: 'sse', endpoint: `${location.origin}/connection/sse` },
  ];
  const forced = params.get('transport');
  if (!forced) return all;
  const only = all.filter((t) => t.transport === forced);
  if (only.length === 0) showError(`unknown transport ${forced}: use websocket, http_stream or sse`);
  return only.length > 0 ? only : all;
}

async function demoToken(body) {
  const res = await fetch('/demo/token', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (res.status === 404)
    throw new Error('demo tokens are off: start the gateway with SWITCHBOARD_DEMO=true (make run does)');
  const answer = await res.json();
  if (!res.ok) throw new Error(answer.error || `token request failed: ${res.status}`);
  return answer;
}

// ---- connection -----------------------------------------------------------

function connect(identity) {
  let token = identity.token;
  const client = new Centrifuge(transports(), {
    token,
    emulationEndpoint: '/emulation',
    // The demo token is short-lived: renew it for the same user before it expires.
    getToken: async () => {
      try {
        token = (await demoToken({ refresh: token })).token;
        return token;
      } catch (err) {
        showError(`${err.message}; reload the page to join again`);
        throw new Centrifuge.UnauthorizedError(err.message);
      }
    },
  });
  const state = (name) => {
    $('conn-state').textContent = name;
    $('conn-state').dataset.state = name;
  };
  client.on('connecting', (ctx) => {
    state('connecting');
    $('transport').textContent = '–';
    if (ctx.code !== 0) console.info('connecting:', ctx.reason);
  });
  client.on('connected', (ctx) => {
    state('connected');
    $('transport').textContent = ctx.transport;
    showError('');
  });
  client.on('disconnected', (ctx) => {
    state('disconnected');
    showError(`disconnected: ${ctx.reason}`);
  });
  client.on('error', (ctx) => console.warn('client error', ctx.type, ctx.error?.message));
  return client;
}

// ---- chat with presence ---------------------------------------------------

function chat(client, me) {
  $('room').textContent = ROOM;
  const present = new Map(); // client id -> {user, name}
  const nameOf = (info) =>
    info?.connInfo?.name ?? [...present.values()].find((p) => p.user === info?.user)?.name;

  const renderPresence = () => {
    const names = new Map(); // one line per user, however many tabs
    for (const p of present.values()) names.set(p.user, p.user === me.user ? `${p.name} (you)` : p.name);
    $('presence').replaceChildren(
      ...[...names.values()].sort().map((name) => {
        const li = document.createElement('li');
        li.textContent = name;
        return li;
      }),
    );
    $('presence-count').textContent = String(names.size);
  };
  const addMessage = (who, text, mine) => {
    const li = document.createElement('li');
    li.className = mine ? 'mine' : '';
    const name = document.createElement('span');
    name.className = 'who';
    name.textContent = who;
    li.append(name, document.createTextNode(text));
    $('messages').append(li);
    li.scrollIntoView({ block: 'end' });
  };
  const join = (info) => present.set(info.client, { user: info.user, name: nameOf(info) ?? info.user });

  const sub = client.newSubscription(ROOM, { joinLeave: true });
  sub.on('subscribed', async () => {
    try {
      const { clients } = await sub.presence();
      present.clear();
      for (const info of Object.values(clients)) join(info);
      renderPresence();
    } catch (err) {
      showError(`presence: ${err.message}`);
    }
  });
  sub.on('join', (ctx) => {
    join(ctx.info);
    renderPresence();
  });
  sub.on('leave', (ctx) => {
    present.delete(ctx.info.client);
    renderPresence();
  });
  // The service delivers {text, user, at} to everyone but the sender.
  sub.on('publication', (ctx) => addMessage(nameOf(ctx.info) ?? ctx.data.user, ctx.data.text, false));
  sub.on('error', (ctx) => showError(`chat: ${ctx.error.message}`));
  sub.subscribe();

  $('chat-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const text = $('chat-text').value.trim();
    if (!text) return;
    try {
      await sub.publish({ text });
      addMessage(me.name, text, true);
      $('chat-text').value = '';
    } catch (err) {
      showError(`send: ${err.message}`);
    }
  });
}

// ---- the store's live price ------------------------------------------------

function price(client) {
  let mtime = 0;
  const show = (entry) => {
    if (entry.mtime !== undefined && entry.mtime < mtime) return; // an older write arrived late
    mtime = entry.mtime ?? mtime;
    const state = entry.deleted ? 'deleted' : entry.value == null ? 'empty' : 'value';
    $('price').textContent =
      state === 'value' ? String(entry.value) : state === 'deleted' ? 'deleted' : 'not set';
    $('price').dataset.state = state;
    $('price-mtime').textContent = entry.mtime ? `changed ${new Date(entry.mtime).toLocaleTimeString()}` : '';
  };
  const result = (text) => ($('price-result').textContent = text);
  const rpc = async (method, data) => {
    try {
      return (await client.rpc(method, data)).data;
    } catch (err) {
      result(`${method}: ${err.message}`);
      return undefined;
    }
  };

  // The subscribe data says what we hold; the reply brings only what changed since.
  const sub = client.newSubscription(`store:${PRICE_KEY}`, {
    getData: async () => (mtime > 0 ? { [PRICE_KEY]: mtime } : {}),
  });
  sub.on('subscribed', (ctx) => {
    const entries = ctx.data?.entries ?? [];
    for (const entry of entries) show(entry);
    if (entries.length === 0 && mtime === 0) show({ value: null });
  });
  sub.on('publication', (ctx) => show(ctx.data));
  sub.on('error', (ctx) => showError(`price: ${ctx.error.message}`));
  sub.subscribe();

  $('price-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const value = Number($('price-input').value);
    const answer = await rpc('store:set', { key: PRICE_KEY, value });
    if (answer) result(`set ${value} at mtime ${answer.mtime}`);
  });
  $('price-get').addEventListener('click', async () => {
    const answer = await rpc('store:get', { key: PRICE_KEY });
    if (answer) result(`get: ${answer.value === null ? 'no value' : answer.value}`);
  });
  $('price-delete').addEventListener('click', async () => {
    const answer = await rpc('store:delete', { key: PRICE_KEY });
    if (answer) result(answer.deleted ? 'deleted' : 'nothing to delete');
  });
}

// ---- a job with a progress bar --------------------------------------------

function job(client, me) {
  let current = '';
  const bar = (progress) => {
    $('job-bar').dataset.progress = String(progress);
    $('job-bar').setAttribute('aria-valuenow', String(progress));
    $('job-fill').style.width = `${progress}%`;
  };
  const sub = client.newSubscription(`jobs:#${me.user}`);
  sub.on('publication', (ctx) => {
    const { job: id, progress, done, cancelled } = ctx.data;
    if (id !== current) return;
    bar(progress);
    $('job-status').textContent = cancelled ? `cancelled at ${progress} %` : done ? 'done' : `${progress} %`;
    if (done) $('job-start').disabled = false;
  });
  sub.on('error', (ctx) => showError(`jobs: ${ctx.error.message}`));
  sub.subscribe();

  $('job-start').addEventListener('click', async () => {
    $('job-start').disabled = true;
    bar(0);
    try {
      await sub.ready(5000);
      current = (await client.rpc('jobs:start', { steps: 10, interval_ms: 200 })).data.job;
      $('job-status').textContent = `job ${current} started`;
    } catch (err) {
      $('job-start').disabled = false;
      showError(`job: ${err.message}`);
    }
  });
}

// ---- start ----------------------------------------------------------------

async function join(name) {
  $('join').disabled = true;
  try {
    const identity = await demoToken({ name });
    const me = { user: identity.user, name: identity.name };
    $('me').textContent = `as ${me.name} (${me.user})`;
    $('join-form').hidden = true;
    $('app').hidden = false;
    const client = connect(identity);
    chat(client, me);
    price(client);
    job(client, me);
    client.connect();
  } catch (err) {
    showError(err.message);
    $('join').disabled = false;
  }
}

$('name').value = params.get('name') || `guest-${Math.floor(Math.random() * 9000 + 1000)}`;
$('join-form').addEventListener('submit', (event) => {
  event.preventDefault();
  join($('name').value);
});
if (params.get('name')) join(params.get('name'));
