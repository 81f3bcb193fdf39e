// The Haraka adapter of the tlsfallback outbound plugin (examples/haraka-outbound.js), exported
// as `@tlsfallback/policy/haraka`.
//
// Haraka compiles a plain plugin file (plugins/NAME.js) in a vm sandbox where import() fails
// (ERR_VM_DYNAMIC_IMPORT_CALLBACK_MISSING), and the plugin is an ES module with top-level await,
// which require() cannot load. So plugins/tlsfallback.js only requires this CommonJS module,
// which Node loads normally, and copies its exports:
//
//   const tlsfallback = require('@tlsfallback/policy/haraka');
//   for (const name of Object.keys(tlsfallback)) exports[name] = tlsfallback[name];
//
// Haraka then calls the hooks below with `this` bound to its plugin object (logging, config).
// Each hook waits for the ES module, then delegates to it. Optional config/tlsfallback.json,
// read at start and again whenever it changes:
//   { "policy": { "pinDurationSecs": 2592000 },
//     "mx": { "example.net": [{ "exchange": "mx.example.net", "priority": 10,
//                               "address": "192.0.2.25", "port": 25 }] } }
// `policy` overrides the default policy (PolicyEngine's keys); `mx` holds static MX routes, used
// instead of DNS for the domains listed (see createPlugin's `routes`).
'use strict';

const ready = import('./haraka-outbound.js').then((m) => m.default);

exports.register = function register() {
  const haraka = this;
  const configure = (p) => {
    try {
      p.configure(haraka.config.get('tlsfallback.json', () => configure(p)) ?? {});
    } catch (err) {
      haraka.logerror(`tlsfallback: config/tlsfallback.json: ${err.message}`);
    }
  };
  ready.then((p) => {
    p.loginfo = (msg) => haraka.loginfo(msg);
    configure(p);
    p.register();
  }, (err) => haraka.logerror(`tlsfallback: ${err.message}`));
};

for (const hook of ['hook_get_mx', 'hook_deferred', 'hook_delivered', 'hook_bounce']) {
  exports[hook] = function delegate(next, ...args) {
    ready.then((p) => p[hook](next, ...args), (err) => {
      this.logerror(`tlsfallback: ${err.message}`);
      next();
    });
  };
}
