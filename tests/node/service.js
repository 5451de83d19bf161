// Drives `pki emulator` with the official azure-iot-provisioning-service SDK:
// create a group, update it with the returned record (etag round trip), get
// it, query with paging, read its attestation mechanism, check 409 and 412,
// delete. Run by tests/emulator_node.rs; prints "service-sdk: ok" on success
// and exits 1 with the error otherwise.
//
// Environment: DPS_CONNECTION_STRING (HostName=localhost;… — the SDK always
// dials port 443), GROUP_CERT_FILE (PEM of the group's signing certificate),
// NODE_EXTRA_CA_CERTS (the emulator's ca.pem).
'use strict';

const fs = require('fs');
const { ProvisioningServiceClient } = require('azure-iot-provisioning-service');

function check(cond, what) {
  if (!cond) {
    throw new Error('check failed: ' + what);
  }
}

async function expectError(promise, name, what) {
  try {
    await promise;
  } catch (err) {
    check(err.name === name || (err.constructor && err.constructor.name === name),
      what + ': expected ' + name + ', got ' + err.name + ' ' + err.message);
    return err;
  }
  throw new Error(what + ': expected ' + name + ', but the call succeeded');
}

async function main() {
  const client = ProvisioningServiceClient.fromConnectionString(process.env.DPS_CONNECTION_STRING);
  const pem = fs.readFileSync(process.env.GROUP_CERT_FILE, 'utf8');
  const id = 'node-group';

  // Create (disabled), as the SDK sample create_enrollment_group.js does.
  const created = (await client.createOrUpdateEnrollmentGroup({
    enrollmentGroupId: id,
    attestation: { type: 'x509', x509: { signingCertificates: { primary: { certificate: pem } } } },
    provisioningStatus: 'disabled'
  })).responseBody;
  check(created.enrollmentGroupId === id, 'create echoes enrollmentGroupId');
  check(typeof created.etag === 'string' && created.etag.length > 0, 'create returns an etag');
  check(created.attestation.x509.signingCertificates.primary.info.subjectName.startsWith('CN='), 'info computed');
  check(created.attestation.x509.signingCertificates.primary.certificate === undefined, 'certificate never returned');
  console.log('created: etag ' + created.etag);

  // Update with the returned record: the SDK sends If-Match from its etag,
  // and the record carries info but no certificate.
  created.provisioningStatus = 'enabled';
  const updated = (await client.createOrUpdateEnrollmentGroup(created)).responseBody;
  check(updated.provisioningStatus === 'enabled', 'update applied');
  check(updated.etag !== created.etag, 'update returns a new etag');
  console.log('updated enrollment record returned: etag ' + updated.etag);

  // A stale etag is refused (412 → InvalidEtagError).
  const stale = Object.assign({}, updated, { etag: created.etag });
  await expectError(client.createOrUpdateEnrollmentGroup(stale), 'InvalidEtagError', 'stale etag');

  // Create of an existing group without etag → 409.
  await expectError(client.createOrUpdateEnrollmentGroup({
    enrollmentGroupId: id,
    attestation: { type: 'x509', x509: { signingCertificates: { primary: { certificate: pem } } } }
  }), 'DeviceAlreadyExistsError', 'create of an existing group');

  const got = (await client.getEnrollmentGroup(id)).responseBody;
  check(got.provisioningStatus === 'enabled' && got.etag === updated.etag, 'get returns the update');
  check(got.attestation.x509.signingCertificates.primary.info.sha256Thumbprint ===
    created.attestation.x509.signingCertificates.primary.info.sha256Thumbprint, 'certificate kept by the PUT-back');

  const mech = (await client.getEnrollmentGroupAttestationMechanism(id)).responseBody;
  check(mech.type === 'x509', 'attestation mechanism');

  // Four more groups, then page through all of them two at a time.
  for (let i = 0; i < 4; i++) {
    await client.createOrUpdateEnrollmentGroup({
      enrollmentGroupId: 'node-page-' + i,
      attestation: { type: 'symmetricKey' }
    });
  }
  const query = client.createEnrollmentGroupQuery({ query: '*' }, 2);
  const seen = [];
  let pages = 0;
  do {
    const page = (await query.next(query.continuationToken)).responseBody;
    check(Array.isArray(page) && page.length <= 2, 'page of at most 2');
    page.forEach((g) => seen.push(g.enrollmentGroupId));
    pages++;
    check(pages < 100, 'paging ends');
  } while (query.hasMoreResults);
  check(seen.length === 5 && new Set(seen).size === 5, 'query saw all 5 groups once: ' + seen.join(','));
  check(pages === 3, '5 groups in pages of 2 is 3 pages, got ' + pages);
  console.log('queried ' + seen.length + ' groups in ' + pages + ' pages');

  // Delete: stale etag refused, then deleted, then gone.
  await expectError(client.deleteEnrollmentGroup(id, created.etag), 'InvalidEtagError', 'delete with stale etag');
  await client.deleteEnrollmentGroup(id, updated.etag);
  for (let i = 0; i < 4; i++) {
    await client.deleteEnrollmentGroup('node-page-' + i);
  }
  const gone = await expectError(client.getEnrollmentGroup(id), 'Error', 'get after delete');
  check(/Not found/i.test(gone.message), 'get after delete says not found: ' + gone.message);
  console.log('service-sdk: ok');
}

main().catch((err) => {
  console.log('error: ' + (err && err.stack ? err.stack : err));
  if (err && err.responseBody) {
    console.log('error body: ' + err.responseBody);
  }
  process.exit(1);
});
