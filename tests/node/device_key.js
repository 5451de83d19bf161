// Prints the device key the official Node SDK's own HMAC helper
// (azure-iot-common `authorization.hmacHash`, what SharedAccessSignature.create
// signs with) derives for a symmetric-key group device: HMAC-SHA256 of the
// registration ID keyed with the base64-decoded group key, base64.
// Usage: node device_key.js <base64GroupKey> <registrationId>
'use strict';
const path = require('path');
const { hmacHash } = require(path.join(__dirname, 'node_modules', 'azure-iot-common', 'dist', 'authorization'));
const [groupKey, registrationId] = process.argv.slice(2);
process.stdout.write(hmacHash(groupKey, registrationId));
