// Registers one X.509 device with `pki emulator` through the official
// azure-iot-provisioning-device + -http + azure-iot-security-x509 SDKs and
// prints one JSON line describing the outcome, for tests/emulator_node.rs to
// check. It always exits 0 unless the SDK itself crashes or times out.
//
// Environment: DPS_HOST (localhost — the SDK always dials port 443), ID_SCOPE,
// REGISTRATION_ID, CERT_FILE (device certificate, optionally followed by its
// chain), KEY_FILE, NODE_EXTRA_CA_CERTS (the emulator's ca.pem).
'use strict';

const fs = require('fs');
const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
const { Http } = require('azure-iot-provisioning-device-http');
const { X509Security } = require('azure-iot-security-x509');

const cert = fs.readFileSync(process.env.CERT_FILE, 'utf8');
const key = fs.readFileSync(process.env.KEY_FILE, 'utf8');
const security = new X509Security(process.env.REGISTRATION_ID, { cert: cert, key: key });
const client = ProvisioningDeviceClient.create(process.env.DPS_HOST, process.env.ID_SCOPE, new Http(), security);

// The SDK has no overall deadline while a registration stays "assigning" (contract §11.7).
const timer = setTimeout(() => {
  console.log(JSON.stringify({ ok: false, timeout: true }));
  process.exit(2);
}, 30000);

client.register((err, result) => {
  clearTimeout(timer);
  if (err) {
    console.log(JSON.stringify({
      ok: false,
      name: err.name,
      message: String(err.message),
      responseBody: err.responseBody || null,
      result: err.result || null
    }));
  } else {
    console.log(JSON.stringify({ ok: true, result: result }));
  }
});
