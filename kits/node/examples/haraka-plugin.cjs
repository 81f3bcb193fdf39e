// Haraka loads plugins with require(); @tlsfallback/policy is an ES module with top-level await.
// Copy this file to your Haraka config's plugins/tlsfallback.js (adjust the import path, e.g.
// to the installed package's examples/haraka-outbound.js) and add `tlsfallback` to
// config/plugins. Each hook waits for the module, then delegates to it.
'use strict';

const ready = import('./haraka-outbound.js').then((m) => m.default);

exports.register = function register() {
  const plugin = this;
  ready.then((p) => {
    p.loginfo = (msg) => plugin.loginfo(msg);
    p.register();
  });
};

for (const hook of ['hook_get_mx', 'hook_deferred', 'hook_delivered', 'hook_bounce']) {
  exports[hook] = function delegate(next, ...args) {
    ready.then((p) => p[hook](next, ...args), (err) => {
      this.logerror(`tlsfallback: ${err.message}`);
      next();
    });
  };
}

/** For a wrapper of Haraka's outbound/tls.js get_tls_options(mx): the engine's TLS options. */
exports.tls_options = async (hmail) => (await ready).tls_options(hmail);
exports.record_tls = async (hmail, protocol) => (await ready).record_tls(hmail, protocol);
