// The HybridVmm dashboard: the Type 3 picture drawn from serve's management API (docs/serve.md#the-dashboard).
// It reads /api/host and /api/vms once a second and each guest's console output every two; rates are per second of
// wall-clock time between two reads. Buttons post to the same routes as `hybridvmm vm`. Each guest's console is an
// xterm.js Terminal (vendor/xterm, served by serve itself). Nothing is loaded from elsewhere.
'use strict';

// name -> { element, row, previous: { at, instructions, exits, channel, byKind }, socket, terminal, kept, resize }
const guests = new Map();
const message = document.getElementById('message');

function say(text) { message.textContent = text; }

async function api(method, path, body) {
  const init = { method, credentials: 'same-origin', headers: {} };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const type = response.headers.get('Content-Type') || '';
  const data = type.includes('json') ? await response.json() : await response.arrayBuffer();
  if (!response.ok) {
    throw new Error(data && data.detail ? `${data.detail} (${response.status})` : `${method} ${path}: ${response.status}`);
  }
  return data;
}

function number(n) { return Number(n).toLocaleString('en-US'); }
function rate(n) { return n >= 100 ? Math.round(n).toLocaleString('en-US') : n.toFixed(1); }
function bytes(n) { return n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(0)} MiB` : `${(n / 1024).toFixed(0)} KiB`; }

function guestElement(name) {
  let guest = guests.get(name);
  if (guest) return guest;
  const element = document.getElementById('guest-template').content.firstElementChild.cloneNode(true);
  element.dataset.vm = name;
  element.querySelector('.name').textContent = name;
  for (const action of ['pause', 'resume', 'stop']) {
    element.querySelector(`button.${action}`).addEventListener('click', () => act(name, action));
  }
  element.querySelector('button.checkpoint').addEventListener('click', () => {
    const path = window.prompt(`Checkpoint '${name}' to this file on the serve host:`, `${name}.snap`);
    if (path) act(name, 'save', { path });
  });
  element.querySelector('button.migrate').addEventListener('click', () => {
    const to = window.prompt(`Live-migrate '${name}' to the migration listener (serve --migration-listen) at HOST:PORT:`, '127.0.0.1:6600');
    if (to) act(name, 'migrate', { to });
  });
  element.querySelector('button.attach').addEventListener('click', () => toggleConsole(name));
  document.getElementById('guests').appendChild(element);
  const row = document.createElement('tr');
  row.dataset.vm = name;
  row.innerHTML = '<td class="worker"></td><td class="exits-rate"></td><td class="msgs-rate"></td>';
  row.querySelector('.worker').textContent = `worker.${name}`;
  document.getElementById('workers').appendChild(row);
  guest = { element, row, previous: null, socket: null, ...openTerminal(name, element.querySelector('.console')) };
  guests.set(name, guest);
  return guest;
}

// The console pane: an xterm.js Terminal as wide as the pane and consoleRows high. A serial line carries no window
// size, so the guest never learns it; xterm wraps what is wider. convertEol: simple guests end lines with LF alone,
// as the <pre> this replaces showed them; CR LF from a Linux tty looks the same.
const consoleRows = 14;
const consoleFont = { fontFamily: 'ui-monospace, "DejaVu Sans Mono", "Liberation Mono", monospace', fontSize: 12 };

function openTerminal(name, pane) {
  const terminal = new Terminal({
    ...consoleFont, cols: 80, rows: consoleRows, convertEol: true, scrollback: 2000, disableStdin: true,
    cursorBlink: false, theme: { background: '#000000', foreground: '#dddddd' },
  });
  terminal.open(pane);
  // Keys become bytes as a terminal sends them (Enter CR, Backspace DEL, Ctrl+letter its control code, arrows as
  // escape sequences); they go to COM1 only while the console is attached (disableStdin otherwise).
  const encoder = new TextEncoder();
  terminal.onData(data => send(name, encoder.encode(data)));
  terminal.onBinary(data => send(name, Uint8Array.from(data, c => c.charCodeAt(0) & 0xff)));
  const fit = () => {
    const cols = fittingColumns(pane);
    if (cols !== terminal.cols) terminal.resize(cols, consoleRows);
  };
  const resize = new ResizeObserver(fit);
  resize.observe(pane);
  fit();
  return { terminal, kept: null, resize };
}

// How many character cells fit across the pane, measured with the terminal's own font (no fit addon is vendored).
function fittingColumns(pane) {
  const probe = document.createElement('span');
  probe.style.cssText = `position:absolute;visibility:hidden;white-space:pre;font-family:${consoleFont.fontFamily};font-size:${consoleFont.fontSize}px`;
  probe.textContent = 'W'.repeat(50);
  document.body.appendChild(probe);
  const cell = probe.getBoundingClientRect().width / 50;
  probe.remove();
  const style = getComputedStyle(pane);
  const width = pane.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight) - 14; // 14: the scroll bar
  return cell > 0 ? Math.max(20, Math.min(200, Math.floor(width / cell))) : 80;
}

function send(name, bytes) {
  const guest = guests.get(name);
  if (guest && guest.socket && guest.socket.readyState === WebSocket.OPEN && bytes.length > 0) guest.socket.send(bytes);
}

async function act(name, action, body) {
  try {
    const vm = await api('POST', `/api/vms/${encodeURIComponent(name)}/${action}`, body);
    say(action === 'save' ? `'${name}' checkpointed to ${vm.path} (${number(vm.bytes)} bytes)`
      : action === 'migrate' ? `'${name}' migrated to ${vm.to} in ${vm.pagesPerRound.length} pre-copy rounds, ${vm.downtimeMilliseconds.toFixed(1)} ms down; it runs there now`
      : `'${name}' is ${vm.state}`);
  } catch (error) {
    say(error.message);
  }
  await refresh();
}

function show(vm, now) {
  const guest = guestElement(vm.name);
  const e = guest.element;
  const s = vm.statistics;
  const state = e.querySelector('.state');
  const m = vm.migration;
  state.textContent = m ? `${vm.state}, migrating to ${m.to}: ${m.phase === 'final' ? 'final copy' : `pre-copy round ${m.round}`}, ${number(m.pages)} pages sent` : vm.state;
  state.className = `state ${vm.state}`;
  e.querySelector('.partition-id').textContent = `partition ${vm.partitionId}`;
  e.querySelector('.vcpus').textContent = vm.vcpus.map(v => `vCPU${v.index} ${v.state}`).join(', ');
  e.querySelector('.instructions').textContent = number(s.instructionsRetired);
  e.querySelector('.memory').textContent = bytes(vm.memoryBytes);
  e.querySelector('.channel').textContent = number(s.channelMessages);
  const p = guest.previous;
  const seconds = p ? (now - p.at) / 1000 : 0;
  const per = (value, before) => (seconds > 0 ? Math.max(0, value - before) / seconds : 0);
  e.querySelector('.mips').textContent = p ? (per(s.instructionsRetired, p.instructions) / 1e6).toFixed(2) : '…';
  const exitsRate = p ? per(s.exits, p.exits) : 0;
  const msgsRate = p ? per(s.channelMessages, p.channel) : 0;
  e.querySelector('.link-exits').textContent = rate(exitsRate);
  e.querySelector('.link-msgs').textContent = rate(msgsRate);
  guest.row.querySelector('.exits-rate').textContent = rate(exitsRate);
  guest.row.querySelector('.msgs-rate').textContent = rate(msgsRate);
  const body = e.querySelector('table.exits tbody');
  body.textContent = '';
  for (const [kind, total] of Object.entries(s.exitsByKind).sort((a, b) => b[1] - a[1])) {
    const row = body.insertRow();
    row.insertCell().textContent = kind;
    row.insertCell().textContent = p ? rate(per(total, p.byKind[kind] || 0)) : '…';
    row.insertCell().textContent = number(total);
  }
  e.querySelector('button.pause').disabled = vm.state !== 'running';
  e.querySelector('button.resume').disabled = vm.state !== 'paused';
  e.querySelector('button.stop').disabled = vm.state === 'stopped';
  e.querySelector('button.checkpoint').disabled = vm.state === 'stopped';
  e.querySelector('button.migrate').disabled = vm.state !== 'running';
  e.querySelector('button.attach').disabled = vm.state === 'stopped' && !guest.socket;
  guest.previous = { at: now, instructions: s.instructionsRetired, exits: s.exits, channel: s.channelMessages, byKind: { ...s.exitsByKind } };
}

async function refresh() {
  try {
    const [host, vms] = await Promise.all([api('GET', '/api/host'), api('GET', '/api/vms')]);
    const now = performance.now();
    const seen = new Set();
    for (const vm of vms) {
      show(vm, now);
      seen.add(vm.name);
    }
    for (const [name, guest] of guests) {
      if (!seen.has(name)) {   // deleted, or migrated to another host
        guest.element.remove();
        guest.row.remove();
        if (guest.socket) guest.socket.close();
        guest.resize.disconnect();
        guest.terminal.dispose();
        guests.delete(name);
      }
    }
    document.getElementById('no-guests').hidden = vms.length > 0;
    const states = Object.entries(host.vmsByState).map(([k, v]) => `${v} ${k}`).join(', ') || 'no VMs';
    document.getElementById('kernel-facts').textContent =
      `${host.vmCount} guest partitions (${states}) · virtual time ${number(host.virtualTicks)} ticks · ` +
      `${number(host.rounds)} scheduler rounds · quantum ${number(host.quantum)} ticks · version ${host.version}`;
    document.getElementById('hardware-facts').textContent =
      `host physical memory: ${bytes(host.hostMemoryUsedBytes)} of ${bytes(host.hostMemoryBytes)} in use · one x86 core per vCPU · the virtual clock`;
    if (message.textContent.startsWith('cannot reach')) say('');
  } catch (error) {
    say(`cannot reach the management API: ${error.message}`);
  }
}

// Without an attached console each guest's terminal shows the output the VM kept (GET .../console: reading it attaches
// nothing, and gives the last 64 KiB). While that only grows, the terminal gets just the new bytes; once the VM's ring
// buffer drops its oldest bytes (or after a detach) the terminal starts again from what is kept.
async function refreshConsoles() {
  for (const [name, guest] of guests) {
    if (guest.socket) continue;
    try {
      const data = new Uint8Array(await api('GET', `/api/vms/${encodeURIComponent(name)}/console`));
      if (guest.socket || guests.get(name) !== guest) continue;   // attached, or gone, while the read was under way
      const kept = guest.kept;
      if (kept && data.length >= kept.length && startsWith(data, kept)) {
        if (data.length > kept.length) guest.terminal.write(data.slice(kept.length));
      } else {
        guest.terminal.write('\x1bc');   // RIS, in the write queue: a full reset after whatever is still being written
        guest.terminal.write(data);
      }
      guest.kept = data;
    } catch (error) {
      // a VM deleted between two reads: the next refresh removes it
    }
  }
}

function startsWith(data, prefix) {
  for (let i = 0; i < prefix.length; i++) {
    if (data[i] !== prefix[i]) return false;
  }
  return true;
}

// Attach: COM1 over the console WebSocket (one per VM, as `hybridvmm vm console`). The socket replays the kept output
// and then streams it live into the terminal; what is typed in the terminal goes to the guest (onData above).
function toggleConsole(name) {
  const guest = guests.get(name);
  if (!guest) return;
  const pane = guest.element.querySelector('.console');
  const button = guest.element.querySelector('button.attach');
  if (guest.socket) {
    guest.socket.close();
    return;
  }
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const socket = new WebSocket(`${scheme}//${location.host}/api/vms/${encodeURIComponent(name)}/console`);
  socket.binaryType = 'arraybuffer';
  guest.socket = socket;
  const terminal = guest.terminal;
  let opened = false;
  socket.onopen = () => {
    opened = true;
    terminal.write('\x1bc');   // the socket replays the kept output first
    terminal.options.disableStdin = false;
    pane.classList.add('attached');
    button.textContent = 'Detach console';
    terminal.focus();
  };
  socket.onmessage = event => {
    if (event.data instanceof ArrayBuffer) terminal.write(new Uint8Array(event.data));
  };
  socket.onclose = event => {
    guest.socket = null;
    guest.kept = null;   // the next read of the kept output redraws the terminal from it
    terminal.options.disableStdin = true;
    pane.classList.remove('attached');
    button.textContent = 'Attach console';
    // A refused handshake (409: one console per VM, or no COM1) reaches a page only as a close without a reason.
    if (!opened) say(`'${name}' console: could not attach (one console per VM: is one attached elsewhere?)`);
    else if (event.reason) say(`'${name}' console: ${event.reason}`);
  };
}

refresh();
refreshConsoles();
setInterval(refresh, 1000);
setInterval(refreshConsoles, 2000);
