'use strict';
// A test SMSC on node-smpp (npm `smpp` 0.5.1): SMPP 3.4 server plus a line-free JSON/HTTP control API.
//
// Started by tests/peers/smsc.py on free ports (0). Prints one JSON line on stdout when ready:
//   {"smpp_port": N, "control_port": M}
// Control API (JSON bodies and answers), see tests/peers/smsc.py for the Python side:
//   GET  /submits?since=K&wait_ms=W   submits with index >= K (long-polls up to W ms when none yet)
//   GET  /sessions                    bound sessions
//   GET  /events                      PDUs received other than submit_sm
//   POST /config {...}                change behaviour (see `config` below)
//   POST /reject {count, status}      answer the next `count` submits with `status`
//   POST /mo {source, destination, body_hex, esm_class, data_coding, wait_ms}   inject MO (deliver_sm)
//   POST /mo/batch {messages: [{source, destination, body_hex, esm_class, data_coding}, ...], wait_ms}
//                                     inject many MO in one request, written to the socket together
//                                     (503 at once if the session closes before it answers them all)
//   POST /receipt {message_id, stat, err, tlv, text, text_id}   send a receipt for any id (unknown, duplicate)
//   POST /drop {mode: "destroy"|"end"}   drop every connection
//   POST /unbind                      send unbind to every bound session
//   POST /raw {hex}                   write raw bytes to every bound session
//   POST /burst {count}               send `count` receipts for made-up ids back to back
//   POST /reset                       forget submits, restore the default config
const http = require('http');
const smpp = require('smpp');

const args = process.argv.slice(2);
function arg(name, fallback) {
  const i = args.indexOf('--' + name);
  return i >= 0 ? args[i + 1] : fallback;
}
// Keep short_message / message_payload as the raw octets the client sent (node-smpp would split the UDH
// off and decode text): this SMSC carries binary SMS and must record them byte for byte.
smpp.filters.message.decode = function (value) { return value; };

const SYSTEM_ID = arg('system-id', 'smsmeter');
const PASSWORD = arg('password', 'secret');

function defaults() {
  return {
    id_format: 'decimal',        // submit_sm_resp message_id: "decimal" | "hex" (upper case, zero padded)
    receipt_id_format: 'same',   // id written in the receipt text: "same" | "decimal" | "hex"
    receipts: true,              // send receipts when registered_delivery asks for them
    receipt_delay_ms: 0,
    receipt_stat: 'DELIVRD',
    receipt_err: 0,
    receipt_tlvs: true,          // receipted_message_id + message_state TLVs
    receipt_text: true,          // "id:… stat:… err:…" short_message
    receipt_before_resp: false,  // send the receipt before the submit_sm_resp
    duplicate_receipts: false,   // send every receipt twice
    hold_responses: false,       // record submits but answer nothing (a full window)
    answer_enquire_link: true,
    mute: false,                 // answer nothing at all (a dead peer that keeps the socket open)
    resp_delay_ms: 0,
  };
}

let config = defaults();
let rejects = [];             // statuses for the next submits
let submits = [];
let events = [];              // every PDU received other than submit_sm: {session, command, status, sequence}
let waiters = [];
let nextId = 1000000;
const sessions = new Set();
let sessionSeq = 0;

const STATES = {ENROUTE: 1, DELIVRD: 2, EXPIRED: 3, DELETED: 4, UNDELIV: 5, ACCEPTD: 6, UNKNOWN: 7, REJECTD: 8};

function formatId(n, fmt) {
  if (fmt === 'hex') return n.toString(16).toUpperCase().padStart(10, '0');
  return String(n);
}

function smppTime(d) {
  const p = (x) => String(x).padStart(2, '0');
  return p(d.getUTCFullYear() % 100) + p(d.getUTCMonth() + 1) + p(d.getUTCDate()) + p(d.getUTCHours()) +
    p(d.getUTCMinutes());
}

function rawBody(pdu) {
  const sm = pdu.short_message;
  if (!sm) return Buffer.alloc(0);
  if (Buffer.isBuffer(sm)) return sm;
  const parts = [];
  if (sm.udh) for (const u of sm.udh) parts.push(u);
  parts.push(Buffer.isBuffer(sm.message) ? sm.message : Buffer.from(String(sm.message), 'latin1'));
  return Buffer.concat(parts);
}

function moPdu(m) {
  return new smpp.PDU('deliver_sm', {
    source_addr_ton: m.source_ton !== undefined ? m.source_ton : 1,
    source_addr_npi: m.source_npi !== undefined ? m.source_npi : 1,
    source_addr: m.source,
    dest_addr_ton: m.destination_ton !== undefined ? m.destination_ton : 3,
    dest_addr_npi: m.destination_npi !== undefined ? m.destination_npi : 0,
    destination_addr: m.destination,
    esm_class: m.esm_class || 0,
    data_coding: m.data_coding !== undefined ? m.data_coding : 4,
    short_message: Buffer.from(m.body_hex || '', 'hex'),
  });
}

// PDUs written in one turn of the event loop leave in one write, as a busy SMSC sends them (and as
// gateway.smpp does): one syscall and segment instead of one a PDU.
function corkUntilNextTick(session) {
  if (session.corked || session.socket.destroyed) return;
  session.corked = true;
  session.socket.cork();
  process.nextTick(() => { session.corked = false; session.socket.uncork(); });
}

function notifyWaiters() {
  const ws = waiters;
  waiters = [];
  for (const w of ws) w();
}

function sendReceipt(session, rec, opts) {
  const stat = opts.stat || config.receipt_stat;
  const err = opts.err !== undefined ? opts.err : config.receipt_err;
  const textId = opts.text_id || rec.message_id;
  const now = smppTime(new Date());
  const fields = {
    source_addr_ton: rec.dest_addr_ton || 1,
    source_addr_npi: rec.dest_addr_npi || 1,
    source_addr: rec.destination || '',
    dest_addr_ton: rec.source_addr_ton || 0,
    dest_addr_npi: rec.source_addr_npi || 0,
    destination_addr: rec.source || '',
    esm_class: 0x04,
    data_coding: 0,
  };
  const useText = opts.text !== undefined ? opts.text : config.receipt_text;
  const useTlv = opts.tlv !== undefined ? opts.tlv : config.receipt_tlvs;
  if (useText) {
    fields.short_message = Buffer.from(
      'id:' + textId + ' sub:001 dlvrd:' + (stat === 'DELIVRD' ? '001' : '000') + ' submit date:' + now +
      ' done date:' + now + ' stat:' + stat + ' err:' + String(err).padStart(3, '0') + ' text:', 'latin1');
  }
  if (useTlv) {
    fields.receipted_message_id = rec.message_id;
    fields.message_state = STATES[stat] || 7;
  }
  session.deliver_sm(fields);
}

function receiptFor(session, rec) {
  const textId = config.receipt_id_format === 'same' ? rec.message_id : formatId(rec.n, config.receipt_id_format);
  const times = config.duplicate_receipts ? 2 : 1;
  for (let i = 0; i < times; i++) sendReceipt(session, rec, {text_id: textId});
}

function onSubmit(session, pdu) {
  if (config.mute) return;
  const body = rawBody(pdu);
  const rec = {
    index: submits.length,
    session: session.id,
    sequence: pdu.sequence_number,
    source: pdu.source_addr,
    source_addr_ton: pdu.source_addr_ton,
    source_addr_npi: pdu.source_addr_npi,
    destination: pdu.destination_addr,
    dest_addr_ton: pdu.dest_addr_ton,
    dest_addr_npi: pdu.dest_addr_npi,
    esm_class: pdu.esm_class,
    data_coding: pdu.data_coding,
    registered_delivery: pdu.registered_delivery,
    protocol_id: pdu.protocol_id,
    validity_period: pdu.validity_period || '',
    body_hex: body.toString('hex'),
    status: 0,
    message_id: null,
    n: null,
  };
  submits.push(rec);
  notifyWaiters();
  if (config.hold_responses) return;
  if (rejects.length > 0) {
    rec.status = rejects.shift();
    session.send(pdu.response({command_status: rec.status}));
    return;
  }
  rec.n = nextId++;
  rec.message_id = formatId(rec.n, config.id_format);
  const wantReceipt = config.receipts && (pdu.registered_delivery & 0x03) !== 0;
  const respond = () => session.send(pdu.response({message_id: rec.message_id}));
  if (wantReceipt && config.receipt_before_resp) {
    receiptFor(session, rec);
    setTimeout(respond, 20);
    return;
  }
  if (config.resp_delay_ms > 0) setTimeout(respond, config.resp_delay_ms);
  else respond();
  if (wantReceipt) {
    if (config.receipt_delay_ms > 0) setTimeout(() => receiptFor(session, rec), config.receipt_delay_ms);
    else receiptFor(session, rec);
  }
}

const server = smpp.createServer((session) => {
  session.id = ++sessionSeq;
  session.bound = false;
  session.on('error', () => {});
  session.socket.setNoDelay(true);
  session.on('close', () => {
    sessions.delete(session);
    // MO sent on this session that it will never answer now: say so at once (the injector keeps them for the
    // next bind, as an SMSC stores MO while no session is bound) instead of after the whole wait_ms
    for (const cb of Object.values(session.moWaiters || {})) cb(null, true);
  });
  session.on('pdu', (pdu) => {
    if (pdu.command !== 'submit_sm') {
      events.push({session: session.id, command: pdu.command, status: pdu.command_status, sequence: pdu.sequence_number});
    }
  });
  const bind = (mode) => (pdu) => {
    if (config.mute) return;
    if (pdu.system_id !== SYSTEM_ID || pdu.password !== PASSWORD) {
      session.send(pdu.response({command_status: smpp.ESME_RBINDFAIL}));
      return;
    }
    session.bound = true;
    session.mode = mode;
    session.system_type = pdu.system_type;
    sessions.add(session);
    session.send(pdu.response({system_id: 'nodesmsc'}));
  };
  session.on('bind_transceiver', bind('transceiver'));
  session.on('bind_transmitter', bind('transmitter'));
  session.on('bind_receiver', bind('receiver'));
  session.on('submit_sm', (pdu) => onSubmit(session, pdu));
  session.on('enquire_link', (pdu) => {
    if (config.mute || !config.answer_enquire_link) return;
    session.send(pdu.response());
  });
  session.on('unbind', (pdu) => {
    session.send(pdu.response());
    sessions.delete(session);
    session.bound = false;
    setTimeout(() => session.close(), 10);
  });
  session.on('deliver_sm_resp', (pdu) => {
    const cb = session.moWaiters && session.moWaiters[pdu.sequence_number];
    if (cb) cb(pdu.command_status);
  });
  session.on('unknown', (pdu) => {
    session.send(new smpp.PDU('generic_nack', {sequence_number: pdu.sequence_number, command_status: 0x03}));
  });
});

function boundSessions() {
  return [...sessions].filter((s) => s.bound && !s.socket.destroyed);
}

function readJson(req) {
  return new Promise((resolve) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      try { resolve(text ? JSON.parse(text) : {}); } catch (e) { resolve({}); }
    });
  });
}

function reply(res, code, obj) {
  const body = JSON.stringify(obj);
  res.writeHead(code, {'content-type': 'application/json', 'content-length': Buffer.byteLength(body)});
  res.end(body);
}

function publicSubmit(r) {
  const {n, ...rest} = r;
  return rest;
}

const control = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://x');
  const body = req.method === 'POST' ? await readJson(req) : {};
  const path = url.pathname;
  try {
    if (path === '/submits') {
      const since = Number(url.searchParams.get('since') || 0);
      const waitMs = Number(url.searchParams.get('wait_ms') || 0);
      const answer = () => reply(res, 200, {submits: submits.slice(since).map(publicSubmit), total: submits.length});
      if (submits.length > since || waitMs <= 0) return answer();
      let done = false;
      const timer = setTimeout(() => { if (!done) { done = true; answer(); } }, waitMs);
      waiters.push(() => { if (!done) { done = true; clearTimeout(timer); answer(); } });
      return;
    }
    if (path === '/events') {
      return reply(res, 200, {events});
    }
    if (path === '/sessions') {
      return reply(res, 200, {sessions: boundSessions().map((s) => ({id: s.id, mode: s.mode, system_type: s.system_type}))});
    }
    if (path === '/config') {
      for (const k of Object.keys(body)) {
        if (!(k in config)) return reply(res, 400, {error: 'unknown option ' + k});
        config[k] = body[k];
      }
      return reply(res, 200, {config});
    }
    if (path === '/reset') {
      config = defaults(); rejects = []; submits = []; events = [];
      return reply(res, 200, {});
    }
    if (path === '/reject') {
      for (let i = 0; i < (body.count || 1); i++) rejects.push(body.status);
      return reply(res, 200, {pending: rejects.length});
    }
    if (path === '/drop') {
      const all = [...server.sessions];
      for (const s of all) { s.bound = false; if (body.mode === 'end') s.close(); else s.destroy(); }
      sessions.clear();
      return reply(res, 200, {dropped: all.length});
    }
    if (path === '/unbind') {
      const bound = boundSessions();
      for (const s of bound) s.unbind();
      return reply(res, 200, {sessions: bound.length});
    }
    if (path === '/raw') {
      const bound = boundSessions();
      for (const s of bound) s.socket.write(Buffer.from(body.hex, 'hex'));
      return reply(res, 200, {sessions: bound.length});
    }
    if (path === '/receipt') {
      const bound = boundSessions().filter((s) => s.mode !== 'transmitter');
      if (bound.length === 0) return reply(res, 409, {error: 'no bound session'});
      const known = submits.find((r) => r.message_id === body.message_id);
      const rec = known || {message_id: body.message_id, source: '', destination: ''};
      sendReceipt(bound[bound.length - 1], rec, body);
      return reply(res, 200, {known: Boolean(known)});
    }
    if (path === '/burst') {
      // `count` receipts for made-up ids, back to back (for measuring how fast a client takes them in)
      const bound = boundSessions().filter((s) => s.mode !== 'transmitter');
      if (bound.length === 0) return reply(res, 409, {error: 'no bound session'});
      const s = bound[bound.length - 1];
      for (let i = 0; i < (body.count || 1); i++) {
        sendReceipt(s, {message_id: String(9000000 + i), source: '7444', destination: '254700000001'}, {});
      }
      return reply(res, 200, {sent: body.count || 1});
    }
    if (path === '/mo' || path === '/mo/batch') {
      const bound = boundSessions().filter((s) => s.mode !== 'transmitter');
      if (bound.length === 0) return reply(res, 409, {error: 'no bound session'});
      const s = bound[bound.length - 1];
      const batch = path === '/mo/batch';
      const messages = batch ? (body.messages || []) : [body];
      const waitMs = body.wait_ms !== undefined ? body.wait_ms : 5000;
      s.moWaiters = s.moWaiters || {};
      const sequences = [];
      const statuses = [];
      let open = messages.length;
      let done = false;
      const answer = (code, extra) => {
        if (done) return;
        done = true;
        if (batch) return reply(res, code, {sequences, statuses, ...extra});
        return reply(res, code, {sequence: sequences[0], status: statuses[0], ...extra});
      };
      corkUntilNextTick(s);
      for (const m of messages) {
        const pdu = moPdu(m);
        s.send(pdu);
        sequences.push(pdu.sequence_number);
        statuses.push(null);
      }
      if (waitMs <= 0 || open === 0) return answer(200, {});
      const timer = setTimeout(() => {
        for (const seq of sequences) delete s.moWaiters[seq];
        answer(504, {error: 'no deliver_sm_resp'});
      }, waitMs);
      sequences.forEach((seq, i) => {
        s.moWaiters[seq] = (status, closed) => {
          delete s.moWaiters[seq];
          if (closed) {
            clearTimeout(timer);
            for (const other of sequences) delete s.moWaiters[other];
            return answer(503, {error: 'session closed before its deliver_sm_resp'});
          }
          statuses[i] = status;
          if (--open === 0) { clearTimeout(timer); answer(200, {}); }
        };
      });
      return;
    }
    reply(res, 404, {error: 'no such path'});
  } catch (e) {
    reply(res, 500, {error: String(e && e.stack || e)});
  }
});

server.listen(0, '127.0.0.1', () => {
  control.listen(0, '127.0.0.1', () => {
    process.stdout.write(JSON.stringify({smpp_port: server.address().port, control_port: control.address().port}) + '\n');
  });
});

process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
process.on('SIGTERM', () => process.exit(0));
