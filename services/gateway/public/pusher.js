// The Switchboard Pusher demo page: plain browser JavaScript over pusher-js
// (loaded before this file as the global `Pusher`), connected to this page's
// own host at /app/<key>, subscribed to one public channel: no secret here,
// and no auth endpoint is needed.
/* global Pusher, document, location, URLSearchParams */
'use strict';

const params = new URLSearchParams(location.search);
const KEY = params.get('key') || '';
const CHANNEL = params.get('channel') || 'demo';

const $ = (id) => document.getElementById(id);

function showError(message) {
  $('error').textContent = message;
  $('error').hidden = !message;
}

function state(id, name, text = name) {
  $(id).textContent = text;
  $(id).dataset.state = name;
}

function addEvent(name, data) {
  const li = document.createElement('li');
  li.dataset.event = name;
  const who = document.createElement('span');
  who.className = 'who';
  who.textContent = name;
  // pusher-js hands over the data parsed when it is JSON: show it as JSON again.
  li.append(who, document.createTextNode(typeof data === 'string' ? data : JSON.stringify(data)));
  $('events').append(li);
  li.scrollIntoView({ block: 'end' });
}

function start() {
  $('channel').textContent = CHANNEL;
  if (!KEY) return showError("name the Pusher app's key: ?key=<app key>");
  if (/^(private|presence)-/.test(CHANNEL))
    return showError('this page subscribes to public channels only (private and presence ones need auth)');
  const tls = location.protocol === 'https:';
  const port = Number(location.port) || (tls ? 443 : 80);
  const pusher = new Pusher(KEY, {
    cluster: 'mt1', // required by pusher-js, unused: the host below is the gateway
    wsHost: location.hostname,
    wsPort: port,
    wssPort: port,
    forceTLS: tls,
    enabledTransports: ['ws'], // over TLS when the page is
  });
  const show = (current) => {
    state('conn-state', current);
    $('socket-id').textContent = current === 'connected' ? `socket ${pusher.connection.socket_id}` : '';
    if (current === 'connected') showError('');
    // A refused upgrade (an Origin not in the allow-list) looks like a gateway out of reach.
    if (current === 'unavailable')
      showError(
        "the gateway cannot be reached or refuses this page's origin (allowed_origins); still trying",
      );
  };
  pusher.connection.bind('state_change', ({ current }) => show(current));
  show(pusher.connection.state); // connecting already
  // pusher:error from the gateway, such as 4001 for a key no app has.
  pusher.connection.bind('error', (err) => {
    const refused = err?.data ?? err?.error?.data;
    showError(refused?.message ? `refused: ${refused.message} (${refused.code})` : 'connection error');
  });
  const channel = pusher.subscribe(CHANNEL);
  channel.bind('pusher:subscription_succeeded', () => state('sub-state', 'subscribed'));
  channel.bind('pusher:subscription_error', (status) =>
    state('sub-state', 'error', `refused: ${status?.error ?? status?.status ?? 'error'}`),
  );
  channel.bind_global((name, data) => {
    if (!name.startsWith('pusher:')) addEvent(name, data);
  });
}

start();
