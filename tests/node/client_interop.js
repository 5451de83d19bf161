// The official Node service SDK (azure-iot-provisioning-service) side of the
// interop tests in tests/client_e2e.rs.
//   node client_interop.js get <groupId>            prints the group as JSON
//   node client_interop.js create <groupId> <pem>   the docs' sample: create
//       disabled with the PEM, then flip to enabled by PUT-ing the returned
//       record back (info-only certificate + If-Match); prints the result
// Reads DPS_CONNECTION_STRING; the SDK dials port 443, so run it with
// NODE_OPTIONS=--require ./client_port_preload.js and PKI_DPS_PORT.
'use strict';
const fs = require('fs');
const path = require('path');
const { ProvisioningServiceClient } = require(path.join(__dirname, 'node_modules', 'azure-iot-provisioning-service'));

const client = ProvisioningServiceClient.fromConnectionString(process.env.DPS_CONNECTION_STRING);
const [cmd, id, pemFile] = process.argv.slice(2);
const fail = (err) => { console.error('error: ' + (err.responseBody || err.message || err)); process.exit(1); };

if (cmd === 'get') {
  client.getEnrollmentGroup(id, (err, group) => {
    if (err) return fail(err);
    process.stdout.write(JSON.stringify(group));
  });
} else if (cmd === 'create') {
  const group = {
    enrollmentGroupId: id,
    attestation: { type: 'x509', x509: { signingCertificates: { primary: { certificate: fs.readFileSync(pemFile, 'utf-8') } } } },
    provisioningStatus: 'disabled',
  };
  client.createOrUpdateEnrollmentGroup(group, (err, created) => {
    if (err) return fail(err);
    created.provisioningStatus = 'enabled';
    client.createOrUpdateEnrollmentGroup(created, (err2, updated) => {
      if (err2) return fail(err2);
      process.stdout.write(JSON.stringify(updated));
    });
  });
} else {
  fail('usage: client_interop.js get|create …');
}
