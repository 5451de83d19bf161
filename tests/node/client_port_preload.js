// Preloaded with NODE_OPTIONS=--require for the client interop tests: the
// Node DPS SDKs always dial port 443 (dps-protocol.md §11.7), so this sends
// their HTTPS requests to PKI_DPS_PORT instead, keeping host name and SNI.
'use strict';
const https = require('https');
const port = Number(process.env.PKI_DPS_PORT);
if (port) {
  const original = https.request;
  https.request = function (options, ...rest) {
    if (options && typeof options === 'object' && !(options instanceof URL)) {
      if (!options.port || Number(options.port) === 443) {
        options = Object.assign({}, options, { port });
      }
    }
    return original.call(this, options, ...rest);
  };
}
