// Prints the SAS token the official Node SDK makes for fixed inputs, for the
// known-answer test in tests/client_sas_node.rs.
// Usage: node sas_token.js <resourceUri> <keyName> <base64Key> <expiry>
// Needs: npm install --prefix tests/node azure-iot-common
'use strict';
const path = require('path');
const { SharedAccessSignature } = require(path.join(__dirname, 'node_modules', 'azure-iot-common'));
const [sr, keyName, key, expiry] = process.argv.slice(2);
process.stdout.write(SharedAccessSignature.create(sr, keyName, key, Number(expiry)).toString());
