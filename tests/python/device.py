"""Registers one device with `pki emulator` through the official Python
device SDK (azure-iot-device, MQTT only) and prints one JSON line describing
the outcome, for tests/emulator_mqtt.rs to check. Exits 0 unless the SDK
itself crashes.

Environment: ID_SCOPE, REGISTRATION_ID, CA_FILE (the emulator's ca.pem), and
either CERT_FILE + KEY_FILE (X.509) or SYMMETRIC_KEY (derived device key);
WEBSOCKETS=1 for MQTT over WebSockets (port 443) instead of port 8883.
"""

import json
import os
import sys

from azure.iot.device import ProvisioningDeviceClient, X509

host = os.environ.get("DPS_HOST", "localhost")
reg_id = os.environ["REGISTRATION_ID"]
scope = os.environ["ID_SCOPE"]
with open(os.environ["CA_FILE"]) as f:
    ca = f.read()
ws = os.environ.get("WEBSOCKETS") == "1"

if os.environ.get("SYMMETRIC_KEY"):
    client = ProvisioningDeviceClient.create_from_symmetric_key(
        provisioning_host=host,
        registration_id=reg_id,
        id_scope=scope,
        symmetric_key=os.environ["SYMMETRIC_KEY"],
        server_verification_cert=ca,
        websockets=ws,
    )
else:
    client = ProvisioningDeviceClient.create_from_x509_certificate(
        provisioning_host=host,
        registration_id=reg_id,
        id_scope=scope,
        x509=X509(cert_file=os.environ["CERT_FILE"], key_file=os.environ["KEY_FILE"]),
        server_verification_cert=ca,
        websockets=ws,
    )

try:
    result = client.register()
    state = result.registration_state
    out = {
        "ok": result.status == "assigned",
        "status": result.status,
        "assignedHub": getattr(state, "assigned_hub", None),
        "deviceId": getattr(state, "device_id", None),
        "result": str(result),
    }
except Exception as e:  # the SDK's error, with its cause chain
    chain = []
    cur = e
    while cur is not None and len(chain) < 6:
        chain.append(f"{type(cur).__name__}: {cur}")
        cur = cur.__cause__ or cur.__context__
    out = {"ok": False, "error": " <- ".join(chain)}
print(json.dumps(out))
sys.stdout.flush()
