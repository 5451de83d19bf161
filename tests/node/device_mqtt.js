// Registers one X.509 device with `pki emulator` through the official
// azure-iot-provisioning-device + -mqtt + azure-iot-security-x509 SDKs, over
// MQTT (port 8883) or, with TRANSPORT=mqttws, MQTT over WebSockets (port 443),
// and prints one JSON line describing the outcome, for tests/emulator_mqtt.rs.
//
// Environment: DPS_HOST (localhost), ID_SCOPE, REGISTRATION_ID, CERT_FILE
// (device certificate, optionally followed by its chain), KEY_FILE,
// TRANSPORT (mqtt | mqttws), NODE_EXTRA_CA_CERTS (the emulator's ca.pem).
'use strict';

const fs = require('fs');
const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
const { Mqtt, MqttWs } = require('azure-iot-provisioning-device-mqtt');
const { X509Security } = require('azure-iot-security-x509');

const cert = fs.readFileSync(process.env.CERT_FILE, 'utf8');
const key = fs.readFileSync(process.env.KEY_FILE, 'utf8');
const security = new X509Security(process.env.REGISTRATION_ID, { cert: cert, key: key });
const transport = process.env.TRANSPORT === 'mqttws' ? new MqttWs() : new Mqtt();
const client = ProvisioningDeviceClient.create(process.env.DPS_HOST, process.env.ID_SCOPE, transport, security);

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
  process.exit(0);
});
