//! Building enrollment-group (and individual-enrollment) bodies, and the
//! checks that run before anything is sent.
//!
//! Updates work on the stored record as a `serde_json::Value`, so every field
//! the user did not set, including ones this tool does not know, goes back
//! unchanged (dps-protocol.md §3.2: DPS keeps the stored certificate when a
//! slot carries only `info`). Only the fields named in a [`GroupSpec`] change.

use crate::cert::{self, Thumbprints};
use crate::dps::vocab::{AllocationPolicy, ProvisioningStatus};
use crate::error::{Error, Result};
use crate::keys::pem_lf;
use aws_lc_rs::digest;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

/// A certificate read from the user's file, checked and described.
#[derive(Clone, Debug)]
pub struct CertInput {
    /// PEM text of the one certificate we send (LF endings).
    pub pem: String,
    /// DER.
    pub der: Vec<u8>,
    /// Subject DN as text.
    pub subject: String,
    /// Subject CN, if any.
    pub common_name: Option<String>,
    /// Upper-case hex SHA-1 of the DER (DPS's `sha1Thumbprint`).
    pub sha1: String,
    /// Upper-case hex SHA-256 of the DER.
    pub sha256: String,
    /// basicConstraints CA:TRUE.
    pub is_ca: bool,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// How many certificates the file held (the first is used).
    pub count_in_file: usize,
}

impl CertInput {
    /// Whether `thumbprint` (SHA-1 or SHA-256, any case) names this certificate.
    pub fn has_thumbprint(&self, thumbprint: &str) -> bool {
        self.sha1.eq_ignore_ascii_case(thumbprint) || self.sha256.eq_ignore_ascii_case(thumbprint)
    }
}

/// Upper-case hex digest of `data` (for tests/ until the test harness
/// moves; new code uses [`crate::cert::Thumbprints`]).
#[doc(hidden)]
pub fn thumbprint(alg: &'static digest::Algorithm, data: &[u8]) -> String {
    crate::cert::hex_upper(digest::digest(alg, data).as_ref())
}

/// Reads the first certificate of a PEM (or DER) file and refuses what must
/// never reach DPS: a private key, no certificate, an expired certificate
/// (unless `allow_expired`). `what` names the file in messages.
pub fn load_cert(data: &[u8], what: &str, allow_expired: bool) -> Result<CertInput> {
    let never_a_key = || {
        Error::input(format!(
            "{what} contains a private key; never send a private key to DPS: pass the certificate file (certs/….cert.pem), not the key or a combined file"
        ))
    };
    let bundle = match cert::read_bundle(data, what) {
        Ok(b) => b,
        // Not PEM and not a DER certificate: a DER key, or no certificate.
        Err(_) if !cert::looks_pem(data) => {
            if rcgen::KeyPair::try_from(data).is_ok() {
                return Err(never_a_key());
            }
            cert::Bundle::default()
        }
        Err(e) => return Err(e),
    };
    if bundle.has_private_key() {
        return Err(never_a_key());
    }
    let der = bundle.certs.first().cloned().ok_or_else(|| {
        Error::input(format!(
            "{what} holds no certificate (expected PEM `BEGIN CERTIFICATE` or DER)"
        ))
    })?;
    let x509 = cert::parse_der(&der, what)?;
    let not_after = x509.validity().not_after.to_datetime();
    if not_after < OffsetDateTime::now_utc() && !allow_expired {
        return Err(Error::input(format!(
            "{what} expired on {}; DPS would accept it but no device could use it: make a new one, or pass --allow-expired",
            not_after.date()
        )));
    }
    let Thumbprints { sha1, sha256 } = Thumbprints::of(&der);
    Ok(CertInput {
        pem: pem_lf("CERTIFICATE", &der),
        subject: cert::subject(&x509),
        common_name: cert::common_name(&x509),
        sha1,
        sha256,
        is_ca: cert::is_ca(&x509),
        not_after,
        count_in_file: bundle.certs.len(),
        der,
    })
}

/// `reprovisionPolicy`, as the portal names its three choices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Reprovision {
    /// Re-provision and migrate the device's data.
    Migrate,
    /// Re-provision and reset to the initial configuration.
    Reset,
    /// Never re-provision.
    Never,
}

impl Reprovision {
    fn wire(self) -> Value {
        let (update, migrate) = match self {
            Reprovision::Migrate => (true, true),
            Reprovision::Reset => (true, false),
            Reprovision::Never => (false, false),
        };
        json!({"updateHubAssignment": update, "migrateDeviceData": migrate})
    }
}

/// The fields the user set on the command line; `None` = leave alone.
#[derive(Clone, Debug, Default)]
pub struct GroupSpec {
    pub cert: Option<CertInput>,
    pub secondary_cert: Option<CertInput>,
    pub ca_ref: Option<String>,
    pub secondary_ca_ref: Option<String>,
    pub status: Option<ProvisioningStatus>,
    pub edge: Option<bool>,
    pub iot_hubs: Vec<String>,
    pub allocation: Option<AllocationPolicy>,
    pub webhook_url: Option<String>,
    pub webhook_api_version: Option<String>,
    pub reprovision: Option<Reprovision>,
    pub initial_twin: Option<Value>,
    /// Certificate issuance: (namespace, certificate authority, policy).
    pub certificate_policy: Option<[String; 3]>,
    /// Make (or switch to) a symmetric-key group with these keys; `None`
    /// keys are generated by the service.
    pub symmetric_key: Option<SymmetricKeys>,
    /// Remove the secondary certificate (or reference): the end of a CA rotation.
    pub drop_secondary: bool,
}

/// The keys of a symmetric-key group (base64); `None` asks DPS to generate one.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SymmetricKeys {
    pub primary: Option<String>,
    pub secondary: Option<String>,
}

impl std::fmt::Debug for SymmetricKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SymmetricKeys([secret elided])")
    }
}

/// Checks a symmetric key as DPS does: base64 of 16 to 64 bytes. `what`
/// names the flag; the key itself is never quoted.
pub fn check_symmetric_key(key: &str, what: &str) -> Result<()> {
    match crate::dps::sas::decode_key(key) {
        Some(k) if (16..=64).contains(&k.len()) => Ok(()),
        Some(k) => Err(Error::input(format!(
            "{what} decodes to {} bytes; DPS takes keys of 16 to 64 bytes (base64)",
            k.len()
        ))),
        None => Err(Error::input(format!("{what} is not valid base64"))),
    }
}

/// Replaces symmetric keys anywhere in an enrollment (or a list of them)
/// with `"[hidden: --show-keys]"`, so they are printed only on request.
pub fn hide_keys(v: &mut Value) {
    match v {
        Value::Array(items) => items.iter_mut().for_each(hide_keys),
        Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                if (k == "primaryKey" || k == "secondaryKey") && val.is_string() {
                    *val = json!("[hidden: --show-keys]");
                } else {
                    hide_keys(val);
                }
            }
        }
        _ => {}
    }
}

impl GroupSpec {
    /// The checks that need no service: hub names and the webhook URL.
    pub fn check(&self) -> Result<()> {
        for hub in &self.iot_hubs {
            if hub.trim().is_empty()
                || hub.contains(['/', '@', ':'])
                || hub.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(Error::input(
                    "--iot-hub needs an IoT hub host name such as my-hub.azure-devices.net (no scheme, path or spaces)",
                ));
            }
        }
        if let Some(u) = &self.webhook_url {
            let ok = reqwest::Url::parse(u).is_ok_and(|url| {
                matches!(url.scheme(), "https" | "http") && url.host_str().is_some()
            });
            if !ok {
                return Err(Error::input(
                    "--webhook-url is not a URL; give the Azure Function's URL, e.g. https://my-func.azurewebsites.net/api/allocate?code=…",
                ));
            }
        }
        Ok(())
    }
}

/// Default `customAllocationDefinition.apiVersion` (the newest webhook
/// version the portal offers).
pub const DEFAULT_WEBHOOK_API_VERSION: &str = "2019-03-31";

/// Checks `--initial-twin` JSON: an object with `tags` and/or
/// `properties.desired`, as the service stores it.
pub fn check_initial_twin(v: &Value) -> Result<()> {
    let shape = r#"expected {"tags":{…},"properties":{"desired":{…}}}"#;
    let obj = v
        .as_object()
        .ok_or_else(|| Error::input(format!("--initial-twin is not a JSON object; {shape}")))?;
    for (k, val) in obj {
        match k.as_str() {
            "tags" if val.is_object() => {}
            "properties"
                if val.as_object().is_some_and(|p| {
                    p.iter()
                        .all(|(k, v)| k == "desired" && v.is_object() || k == "reported")
                }) => {}
            _ => {
                return Err(Error::input(format!(
                    "--initial-twin has an unexpected `{k}`; {shape}"
                )));
            }
        }
    }
    Ok(())
}

fn obj(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    v.as_object_mut().expect("just made an object")
}

fn slot(cert: &CertInput) -> Value {
    json!({ "certificate": cert.pem })
}

/// Builds the body for a create (`existing` = None) or an update of the
/// stored record `existing`, changing only what `spec` sets.
pub fn build_group(id: &str, spec: &GroupSpec, existing: Option<&Value>) -> Result<Value> {
    spec.check()?;
    let creating = existing.is_none();
    let mut body = existing.cloned().unwrap_or_else(|| json!({}));
    let root = obj(&mut body);
    root.insert("enrollmentGroupId".into(), json!(id));

    let touches_x509 = spec.cert.is_some()
        || spec.secondary_cert.is_some()
        || spec.ca_ref.is_some()
        || spec.secondary_ca_ref.is_some();
    if creating && spec.cert.is_none() && spec.ca_ref.is_none() && spec.symmetric_key.is_none() {
        return Err(Error::input(
            "a new enrollment group needs a signing certificate: pass --cert PEM (root or intermediate CA) or --ca-ref NAME, or --symmetric-key",
        ));
    }
    if let Some(keys) = &spec.symmetric_key {
        if touches_x509 {
            return Err(Error::input(
                "--symmetric-key makes a symmetric-key group; it cannot also take --cert or --ca-ref",
            ));
        }
        for (k, what) in [
            (&keys.primary, "--primary-key"),
            (&keys.secondary, "--secondary-key"),
        ] {
            if let Some(k) = k {
                check_symmetric_key(k, what)?;
            }
        }
        let att = obj(root.entry("attestation").or_insert_with(|| json!({})));
        let was_symmetric = att.get("type").and_then(Value::as_str) == Some("symmetricKey");
        let old = |which: &str| {
            att.get("symmetricKey")
                .and_then(|s| s.get(which))
                .filter(|_| was_symmetric)
                .cloned()
                .unwrap_or(Value::Null)
        };
        // Keys given replace the stored ones; others stay (or are generated).
        let primary = keys
            .primary
            .as_ref()
            .map_or_else(|| old("primaryKey"), |k| json!(k));
        let secondary = keys
            .secondary
            .as_ref()
            .map_or_else(|| old("secondaryKey"), |k| json!(k));
        att.clear();
        att.insert("type".into(), json!("symmetricKey"));
        att.insert(
            "symmetricKey".into(),
            json!({ "primaryKey": primary, "secondaryKey": secondary }),
        );
    }
    if touches_x509 {
        let att = obj(root.entry("attestation").or_insert_with(|| json!({})));
        if att.get("type").and_then(Value::as_str) != Some("x509") {
            // Switching from symmetric key (or nothing) to X.509.
            att.clear();
            att.insert("type".into(), json!("x509"));
        }
        let x509 = obj(att.entry("x509").or_insert_with(|| json!({})));
        if spec.cert.is_some() || spec.ca_ref.is_some() {
            // A new primary replaces the mechanism wholesale: a group is
            // either inline certificates or CA references, never both.
            let keep = |k: &str| {
                x509.get(k)
                    .and_then(|s| s.get("secondary"))
                    .filter(|_| !spec.drop_secondary)
                    .cloned()
            };
            let keep_secondary_cert = keep("signingCertificates");
            let keep_secondary_ref = keep("caReferences");
            x509.clear();
            if let Some(c) = &spec.cert {
                let mut certs = json!({ "primary": slot(c) });
                if let Some(s) = keep_secondary_cert {
                    certs["secondary"] = s;
                }
                x509.insert("signingCertificates".into(), certs);
            } else if let Some(r) = &spec.ca_ref {
                let mut refs = json!({ "primary": r });
                if let Some(s) = keep_secondary_ref {
                    refs["secondary"] = s;
                }
                x509.insert("caReferences".into(), refs);
            }
        }
        if let Some(c) = &spec.secondary_cert {
            if x509.contains_key("caReferences") {
                return Err(Error::input(
                    "the group uses CA references (--ca-ref); give the secondary as --secondary-ca-ref NAME, not --secondary-cert",
                ));
            }
            obj(x509
                .entry("signingCertificates")
                .or_insert_with(|| json!({})))
            .insert("secondary".into(), slot(c));
        }
        if let Some(r) = &spec.secondary_ca_ref {
            if x509.contains_key("signingCertificates") {
                return Err(Error::input(
                    "the group uses inline certificates (--cert); give the secondary as --secondary-cert PEM, not --secondary-ca-ref",
                ));
            }
            obj(x509.entry("caReferences").or_insert_with(|| json!({})))
                .insert("secondary".into(), json!(r));
        }
    }

    if let Some(s) = &spec.status {
        root.insert("provisioningStatus".into(), json!(s));
    } else if creating {
        root.insert(
            "provisioningStatus".into(),
            json!(ProvisioningStatus::Enabled),
        );
    }
    if let Some(edge) = spec.edge {
        obj(root.entry("capabilities").or_insert_with(|| json!({})))
            .insert("iotEdge".into(), json!(edge));
    }
    if let Some(r) = spec.reprovision {
        root.insert("reprovisionPolicy".into(), r.wire());
    }
    if let Some(t) = &spec.initial_twin {
        check_initial_twin(t)?;
        root.insert("initialTwin".into(), t.clone());
    }
    if let Some([ns, ca, policy]) = &spec.certificate_policy {
        root.insert("namespaceName".into(), json!(ns));
        root.insert("certificateAuthorityName".into(), json!(ca));
        root.insert("certificatePolicyName".into(), json!(policy));
        // The preview alias would contradict (or duplicate) the triple.
        root.remove("credentialPolicyName");
    }
    if !spec.iot_hubs.is_empty() {
        root.insert("iotHubs".into(), json!(spec.iot_hubs));
        // DPS answers 400004 for iotHubs without an allocation policy.
        if spec.allocation.is_none() && !root.contains_key("allocationPolicy") {
            root.insert("allocationPolicy".into(), json!(AllocationPolicy::Hashed));
        }
    }
    if let Some(a) = &spec.allocation {
        root.insert("allocationPolicy".into(), json!(a));
        if *a != AllocationPolicy::Custom {
            root.remove("customAllocationDefinition");
        }
    }
    if spec.webhook_url.is_some() || spec.webhook_api_version.is_some() {
        let def = obj(root
            .entry("customAllocationDefinition")
            .or_insert_with(|| json!({})));
        if let Some(u) = &spec.webhook_url {
            def.insert("webhookUrl".into(), json!(u));
        }
        if let Some(v) = &spec.webhook_api_version {
            def.insert("apiVersion".into(), json!(v));
        }
        def.entry("apiVersion")
            .or_insert_with(|| json!(DEFAULT_WEBHOOK_API_VERSION));
    }
    let custom = root
        .get("allocationPolicy")
        .and_then(Value::as_str)
        .map(AllocationPolicy::parse)
        == Some(AllocationPolicy::Custom);
    if custom
        && root
            .get("customAllocationDefinition")
            .and_then(|d| d.get("webhookUrl"))
            .is_none()
    {
        return Err(Error::input(
            "--allocation custom needs the Azure Function to call: pass --webhook-url URL",
        ));
    }
    if !custom && (spec.webhook_url.is_some() || spec.webhook_api_version.is_some()) {
        return Err(Error::input(
            "--webhook-url only applies to custom allocation: add --allocation custom",
        ));
    }
    Ok(body)
}

/// Body for a disabled individual enrollment that blocks one device of a
/// group (DPS's documented way to disallow a single device).
pub fn build_disallow(reg_id: &str, device: &CertInput, existing: Option<&Value>) -> Value {
    let mut body = existing.cloned().unwrap_or_else(|| json!({}));
    let root = obj(&mut body);
    root.insert("registrationId".into(), json!(reg_id));
    root.insert(
        "provisioningStatus".into(),
        json!(ProvisioningStatus::Disabled),
    );
    if existing.is_none() {
        root.insert(
            "attestation".into(),
            json!({"type":"x509","x509":{"clientCertificates":{"primary":{"certificate": device.pem}}}}),
        );
    }
    body
}

/// A short human summary of a stored group (or individual enrollment).
pub fn summary(v: &Value) -> String {
    let s = |p: &str| v.pointer(p).and_then(Value::as_str);
    let mut out = String::new();
    match (s("/enrollmentGroupId"), s("/registrationId")) {
        (Some(g), _) => out.push_str(&format!("group:        {g}\n")),
        (None, Some(r)) => out.push_str(&format!("device:       {r}\n")),
        (None, None) => {}
    }
    out.push_str(&format!(
        "status:       {}\n",
        s("/provisioningStatus").unwrap_or("enabled")
    ));
    let x509 = v.pointer("/attestation/x509");
    let mut any = false;
    for kind in ["signingCertificates", "clientCertificates"] {
        for which in ["primary", "secondary"] {
            if let Some(info) = x509.and_then(|x| x.pointer(&format!("/{kind}/{which}/info"))) {
                any = true;
                let f = |k: &str| info.get(k).and_then(Value::as_str).unwrap_or("?");
                out.push_str(&format!("{which:<9}     {}\n", f("subjectName")));
                out.push_str(&format!("  sha1:       {}\n", f("sha1Thumbprint")));
                out.push_str(&format!("  sha256:     {}\n", f("sha256Thumbprint")));
                out.push_str(&format!("  not after:  {}\n", f("notAfterUtc")));
            }
        }
    }
    if let Some(refs) = x509.and_then(|x| x.get("caReferences")) {
        for which in ["primary", "secondary"] {
            if let Some(r) = refs.get(which).and_then(Value::as_str) {
                any = true;
                out.push_str(&format!("{which:<9}     CA reference `{r}`\n"));
            }
        }
    }
    if !any {
        let t = s("/attestation/type").unwrap_or("none");
        out.push_str(&format!("attestation:  {t}\n"));
    }
    if let Some(p) = s("/allocationPolicy") {
        out.push_str(&format!("allocation:   {p}\n"));
    }
    if let Some(h) = v.get("iotHubs").and_then(Value::as_array) {
        let hubs: Vec<&str> = h.iter().filter_map(Value::as_str).collect();
        out.push_str(&format!("iot hubs:     {}\n", hubs.join(", ")));
    }
    if v.pointer("/capabilities/iotEdge") == Some(&json!(true)) {
        out.push_str("iot edge:     yes\n");
    }
    out.push_str(&format!("etag:         {}\n", s("/etag").unwrap_or("-")));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert() -> CertInput {
        CertInput {
            pem: "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n".into(),
            der: vec![0],
            subject: "CN=x".into(),
            common_name: Some("x".into()),
            sha1: "00".into(),
            sha256: "00".into(),
            is_ca: true,
            not_after: OffsetDateTime::now_utc(),
            count_in_file: 1,
        }
    }

    #[test]
    fn create_needs_a_certificate_and_sets_defaults() {
        assert!(build_group("g", &GroupSpec::default(), None).is_err());
        let spec = GroupSpec {
            cert: Some(cert()),
            iot_hubs: vec!["h.azure-devices.net".into()],
            ..Default::default()
        };
        let b = build_group("g", &spec, None).unwrap();
        assert_eq!(b["provisioningStatus"], "enabled");
        assert_eq!(b["allocationPolicy"], "hashed");
        assert!(
            b.pointer("/attestation/x509/signingCertificates/primary/certificate")
                .unwrap()
                .as_str()
                .unwrap()
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
    }

    #[test]
    fn update_keeps_unknown_fields_and_stored_certificate() {
        let stored = json!({
            "enrollmentGroupId": "g",
            "attestation": {"type":"x509","x509":{"signingCertificates":{"primary":{"info":{"sha1Thumbprint":"AB"}}}}},
            "provisioningStatus": "enabled",
            "futureField": {"x": 1},
            "etag": "e1"
        });
        let spec = GroupSpec {
            status: Some(ProvisioningStatus::Disabled),
            edge: Some(true),
            ..Default::default()
        };
        let b = build_group("g", &spec, Some(&stored)).unwrap();
        assert_eq!(b["provisioningStatus"], "disabled");
        assert_eq!(b["futureField"], json!({"x": 1}));
        assert_eq!(b["capabilities"]["iotEdge"], true);
        assert_eq!(
            b["attestation"]["x509"]["signingCertificates"]["primary"]["info"]["sha1Thumbprint"],
            "AB"
        );
        // A new --cert replaces the info-only slot with the certificate.
        let spec = GroupSpec {
            cert: Some(cert()),
            ..Default::default()
        };
        let b = build_group("g", &spec, Some(&stored)).unwrap();
        let p = &b["attestation"]["x509"]["signingCertificates"]["primary"];
        assert!(p.get("info").is_none() && p.get("certificate").is_some());
    }

    #[test]
    fn custom_allocation_needs_a_webhook() {
        let spec = GroupSpec {
            cert: Some(cert()),
            allocation: Some(AllocationPolicy::Custom),
            ..Default::default()
        };
        assert!(build_group("g", &spec, None).is_err());
        let spec = GroupSpec {
            webhook_url: Some("https://f".into()),
            ..spec
        };
        let b = build_group("g", &spec, None).unwrap();
        assert_eq!(
            b["customAllocationDefinition"]["apiVersion"],
            DEFAULT_WEBHOOK_API_VERSION
        );
    }

    #[test]
    fn ca_refs_and_inline_certs_do_not_mix() {
        let spec = GroupSpec {
            ca_ref: Some("root".into()),
            secondary_cert: Some(cert()),
            ..Default::default()
        };
        assert!(build_group("g", &spec, None).is_err());
        let spec = GroupSpec {
            ca_ref: Some("root".into()),
            secondary_ca_ref: Some("root2".into()),
            ..Default::default()
        };
        let b = build_group("g", &spec, None).unwrap();
        assert_eq!(
            b["attestation"]["x509"]["caReferences"],
            json!({"primary":"root","secondary":"root2"})
        );
    }

    #[test]
    fn twin_shape_is_checked() {
        check_initial_twin(&json!({"tags":{"a":1},"properties":{"desired":{"b":2}}})).unwrap();
        assert!(check_initial_twin(&json!({"desired":{}})).is_err());
        assert!(check_initial_twin(&json!([1])).is_err());
    }

    #[test]
    fn symmetric_group_keeps_stored_keys_and_hides_them() {
        let spec = GroupSpec {
            symmetric_key: Some(SymmetricKeys::default()),
            ..Default::default()
        };
        let body = build_group("s", &spec, None).unwrap();
        assert_eq!(
            body["attestation"],
            json!({"type":"symmetricKey","symmetricKey":{"primaryKey":null,"secondaryKey":null}})
        );
        let mut stored = body.clone();
        stored["attestation"]["symmetricKey"] = json!({"primaryKey":"AAAA","secondaryKey":"BBBB"});
        let spec = GroupSpec {
            symmetric_key: Some(SymmetricKeys {
                primary: Some("c2VjcmV0LWtleS1mb3ItdGVzdHM=".into()),
                secondary: None,
            }),
            ..Default::default()
        };
        let mut updated = build_group("s", &spec, Some(&stored)).unwrap();
        assert_eq!(
            updated["attestation"]["symmetricKey"]["secondaryKey"],
            "BBBB"
        );
        hide_keys(&mut updated);
        assert!(!updated.to_string().contains("BBBB"));
        assert!(!updated.to_string().contains("c2VjcmV0"));
        assert!(format!("{spec:?}").contains("elided"));
    }
}
