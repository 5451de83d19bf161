// A sample as the DPS docs write them: everything comes from the standard
// environment variables that `pki emulator --print-env sh` prints, nothing
// else. With the service SDK (DPS_CONNECTION_STRING) it enrolls the
// intermediate CA of the device's chain as a group, then registers the device
// (PROVISIONING_HOST, PROVISIONING_IDSCOPE, PROVISIONING_REGISTRATION_ID,
// X509_CERT_FILE, X509_KEY_FILE) over HTTPS; TLS trust comes from
// NODE_EXTRA_CA_CERTS. Prints one JSON line; run from tests/emulator_env.rs.
'use strict';

const fs = require('fs');
const path = require('path');
const modules = path.join(__dirname, 'node_modules');
const { ProvisioningServiceClient } = require(path.join(modules, 'azure-iot-provisioning-service'));
const { ProvisioningDeviceClient } = require(path.join(modules, 'azure-iot-provisioning-device'));
const { Http } = require(path.join(modules, 'azure-iot-provisioning-device-http'));
const { X509Security } = require(path.join(modules, 'azure-iot-security-x509'));

const env = process.env;
const chain = fs.readFileSync(env.X509_CERT_FILE, 'utf8');
const pems = chain.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g);
const timer = setTimeout(() => { console.log(JSON.stringify({ ok: false, timeout: true })); process.exit(2); }, 30000);

async function main() {
  const service = ProvisioningServiceClient.fromConnectionString(env.DPS_CONNECTION_STRING);
  await service.createOrUpdateEnrollmentGroup({
    enrollmentGroupId: 'env-group',
    attestation: { type: 'x509', x509: { signingCertificates: { primary: { certificate: pems[1] } } } }
  });
  const security = new X509Security(env.PROVISIONING_REGISTRATION_ID, { cert: chain, key: fs.readFileSync(env.X509_KEY_FILE, 'utf8') });
  const device = ProvisioningDeviceClient.create(env.PROVISIONING_HOST, env.PROVISIONING_IDSCOPE, new Http(), security);
  return device.register();
}

main().then((result) => {
  clearTimeout(timer);
  console.log(JSON.stringify({ ok: true, result: result.registrationState || result }));
}, (err) => {
  clearTimeout(timer);
  console.log(JSON.stringify({ ok: false, name: err.name, message: String(err.message), responseBody: err.responseBody || null }));
});
