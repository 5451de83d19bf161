//! `pki enroll`: create or update an X.509 or symmetric-key enrollment group, and `show`,
//! `list`, `delete` and `disallow`.
//!
//! Create-or-update reads the group first and, if it exists, PUTs it back
//! with its etag in `If-Match`, changing only the fields given on the command
//! line. The connection string comes from `DPS_CONNECTION_STRING` (or
//! `--connection-string`) and is never printed.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::args::{ConnArgs, NetArgs, block_on, warn};
use crate::dps::client::{Collection, ServiceClient};
use crate::dps::enrollment::{
    self, CertInput, GroupSpec, Reprovision, SymmetricKeys, build_group, load_cert,
};
use crate::dps::upsert::{self, Concurrency, Upserted, upsert_group};
use crate::dps::vocab::{AllocationPolicy, ProvisioningStatus};
use crate::error::{Error, Result};
use crate::regid::{self, RegistrationId};

/// Create or update an X.509 enrollment group (or show, list, delete, disallow).
///
/// With no subcommand: `pki enroll GROUP_ID --cert CA.pem [options]` creates the
/// group, or updates it keeping every field not given here.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
#[command(
    after_help = "The connection string is read from DPS_CONNECTION_STRING (preferred:\n\
command-line arguments are visible to other local users).\n\nExamples:\n  \
pki enroll line-7 --cert certs/azure-iot-test-only.intermediate.cert.pem\n  \
pki enroll line-7 --status disabled\n  pki enroll list\n  pki enroll disallow certs/device-0003.cert.pem"
)]
pub struct EnrollArgs {
    #[command(subcommand)]
    command: Option<EnrollCommand>,
    #[command(flatten)]
    group: Box<GroupArgs>,
}

#[derive(Debug, clap::Subcommand)]
enum EnrollCommand {
    /// Show one enrollment group.
    #[command(
        after_help = "Example:\n  DPS_CONNECTION_STRING='HostName=…' pki enroll show my-group --json"
    )]
    Show {
        /// The enrollment group ID.
        group_id: String,
        /// Print the service's JSON.
        #[arg(long)]
        json: bool,
        /// Also print a symmetric-key group's keys (hidden by default).
        #[arg(long)]
        show_keys: bool,
        #[command(flatten)]
        conn: ConnArgs,
        #[command(flatten)]
        net: NetArgs,
    },
    /// List every enrollment group (all pages).
    #[command(after_help = "Example:\n  pki enroll list --ca-file dps-emulator/ca.pem")]
    List {
        /// Print the service's JSON array.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: ConnArgs,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Delete an enrollment group.
    #[command(
        after_help = "Examples:\n  pki enroll delete my-group\n  pki enroll delete my-group --if-match \"$ETAG\"   # only if nobody changed it"
    )]
    Delete {
        /// The enrollment group ID.
        group_id: String,
        /// Delete only if the group's etag is still this one.
        #[arg(long, value_name = "ETAG")]
        if_match: Option<String>,
        #[command(flatten)]
        conn: ConnArgs,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Block one device of a group: a disabled individual enrollment for its certificate.
    #[command(
        after_help = "Example:\n  pki enroll disallow certs/device-0002.cert.pem   # device-0002 can no longer provision"
    )]
    Disallow {
        /// The device's certificate (its CN is the registration ID).
        device_cert: PathBuf,
        /// Accept an expired device certificate.
        #[arg(long)]
        allow_expired: bool,
        /// Print the service's JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: ConnArgs,
        #[command(flatten)]
        net: NetArgs,
    },
}

#[derive(Debug, clap::Args)]
struct GroupArgs {
    /// The enrollment group ID (letters, digits, - . _ :, at most 128).
    #[arg(required = true)]
    group_id: Option<String>,
    /// Primary signing certificate (root or intermediate CA, PEM or DER; no private key).
    #[arg(long, value_name = "PEM", conflicts_with = "ca_ref")]
    cert: Option<PathBuf>,
    /// Secondary signing certificate.
    #[arg(long, value_name = "PEM", conflicts_with = "secondary_ca_ref")]
    secondary_cert: Option<PathBuf>,
    /// Remove the group's secondary certificate (with --cert or --ca-ref): the last step
    /// of a CA rotation, after every device has re-registered with the new chain.
    #[arg(long, conflicts_with_all = ["secondary_cert", "secondary_ca_ref"])]
    drop_secondary: bool,
    /// Use a certificate of the DPS certificate store (`pki ca upload`) as primary.
    #[arg(long, value_name = "NAME")]
    ca_ref: Option<String>,
    /// Secondary certificate-store reference.
    #[arg(long, value_name = "NAME")]
    secondary_ca_ref: Option<String>,
    /// Make a symmetric-key group (DPS generates the keys unless --primary-key/--secondary-key).
    #[arg(long, conflicts_with_all = ["cert", "secondary_cert", "ca_ref", "secondary_ca_ref"])]
    symmetric_key: bool,
    /// The symmetric-key group's primary key (base64 of 16 to 64 bytes).
    #[arg(long, value_name = "BASE64", requires = "symmetric_key")]
    primary_key: Option<String>,
    /// The symmetric-key group's secondary key.
    #[arg(long, value_name = "BASE64", requires = "symmetric_key")]
    secondary_key: Option<String>,
    /// Print the group's symmetric keys (never printed otherwise, not even with --json).
    #[arg(long)]
    show_keys: bool,
    /// Provisioning status.
    #[arg(long, value_enum)]
    status: Option<ProvisioningStatus>,
    /// Devices of this group are IoT Edge devices.
    #[arg(long, conflicts_with = "no_edge")]
    edge: bool,
    /// Devices of this group are not IoT Edge devices.
    #[arg(long)]
    no_edge: bool,
    /// IoT hub host name devices may be assigned to (repeat for several).
    #[arg(long = "iot-hub", value_name = "HOST")]
    iot_hubs: Vec<String>,
    /// How DPS picks the hub (hashed when --iot-hub is given without it).
    #[arg(long, value_enum)]
    allocation: Option<AllocationPolicy>,
    /// Azure Function URL for --allocation custom.
    #[arg(long, value_name = "URL")]
    webhook_url: Option<String>,
    /// Webhook API version for --allocation custom (default 2019-03-31).
    #[arg(long, value_name = "VERSION")]
    webhook_api_version: Option<String>,
    /// What happens when a device re-provisions.
    #[arg(long, value_enum)]
    reprovision: Option<Reprovision>,
    /// Initial twin: JSON `{"tags":{…},"properties":{"desired":{…}}}`, or @FILE.
    #[arg(long, value_name = "JSON|@FILE")]
    initial_twin: Option<String>,
    /// Update only if the group's etag is this one (`*` forces).
    #[arg(long, value_name = "ETAG")]
    if_match: Option<String>,
    /// If another writer changes the group between read and write, read it again and retry.
    #[arg(long)]
    retry_conflicts: bool,
    /// Certificate issuance: the ADR certificate policy that issues the devices'
    /// operational certificates, NAMESPACE/CA/POLICY (or use the three flags below).
    #[arg(long, value_name = "NAMESPACE/CA/POLICY", value_parser = parse_policy,
          conflicts_with_all = ["namespace", "certificate_authority", "policy"])]
    certificate_policy: Option<[String; 3]>,
    /// The ADR namespace of the certificate policy (with --certificate-authority and --policy).
    #[arg(long, value_name = "NAME", requires_all = ["certificate_authority", "policy"])]
    namespace: Option<String>,
    /// The certificate authority of the policy (with --namespace and --policy).
    #[arg(long, value_name = "NAME", requires_all = ["namespace", "policy"])]
    certificate_authority: Option<String>,
    /// The certificate policy name (with --namespace and --certificate-authority).
    #[arg(long, value_name = "NAME", requires_all = ["namespace", "certificate_authority"])]
    policy: Option<String>,
    /// Accept an expired signing certificate.
    #[arg(long)]
    allow_expired: bool,
    /// Print the JSON body a create would send, and stop (contacts nothing, needs no connection string).
    #[arg(long)]
    dry_run: bool,
    /// Print the service's JSON instead of a summary.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    conn: ConnArgs,
    #[command(flatten)]
    net: NetArgs,
}

/// Prints service JSON; symmetric keys are hidden unless `show_keys`.
fn print_json(v: &Value, show_keys: bool) {
    let mut v = v.clone();
    if !show_keys {
        enrollment::hide_keys(&mut v);
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&v).unwrap_or_else(|_| v.to_string())
    );
}

/// The summary, plus a symmetric-key group's keys when asked for; else a
/// note on stderr saying how to see them.
fn print_summary(v: &Value, show_keys: bool) {
    print!("{}", enrollment::summary(v));
    let Some(keys) = v.pointer("/attestation/symmetricKey") else {
        return;
    };
    if show_keys {
        for (label, k) in [
            ("primary key:  ", "primaryKey"),
            ("secondary key:", "secondaryKey"),
        ] {
            if let Some(key) = keys.get(k).and_then(Value::as_str) {
                println!("{label}{key}");
            }
        }
    } else {
        eprintln!(
            "(symmetric keys hidden; --show-keys prints them, `pki sas device-key` derives a device's key)"
        );
    }
}

/// Reads a signing certificate and prints the warnings that do not stop us.
fn read_signing_cert(path: &Path, allow_expired: bool) -> Result<CertInput> {
    let what = path.display().to_string();
    let c = load_cert(&crate::fsio::read_input(path)?, &what, allow_expired)?;
    if c.count_in_file > 1 {
        warn(format!(
            "{what} holds {} certificates; using the first ({})",
            c.count_in_file, c.subject
        ));
    }
    if !c.is_ca {
        warn(format!(
            "{what} ({}) is not a CA certificate (no basicConstraints CA:TRUE); a group certificate should be the root or intermediate that signs the devices",
            c.subject
        ));
    }
    if c.not_after < time::OffsetDateTime::now_utc() {
        warn(format!("{what} has expired (--allow-expired)"));
    }
    super::args::warn_if_seeded(path, &what, &c.subject, &c.sha1);
    Ok(c)
}

fn read_twin(arg: &str) -> Result<Value> {
    let text = match arg.strip_prefix('@') {
        Some(path) => String::from_utf8(crate::fsio::read_input(Path::new(path))?)
            .map_err(|_| Error::input(format!("{path} is not UTF-8 text")))?,
        None => arg.to_string(),
    };
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| Error::input(format!("--initial-twin is not valid JSON: {e}")))?;
    enrollment::check_initial_twin(&v)?;
    Ok(v)
}

pub fn run(args: EnrollArgs) -> Result<()> {
    match args.command {
        None => create_or_update(*args.group),
        Some(EnrollCommand::Show {
            group_id,
            json,
            show_keys,
            conn,
            net,
        }) => {
            regid::check_id(&group_id, "group ID")?;
            let client = ServiceClient::new(conn.load()?, net.options())?;
            match block_on(client.get(Collection::Groups, &group_id))?? {
                Some(v) if json => print_json(&v, show_keys),
                Some(v) => print_summary(&v, show_keys),
                None => {
                    return Err(Error::Service(format!(
                        "enrollment group `{group_id}` does not exist"
                    )));
                }
            }
            Ok(())
        }
        Some(EnrollCommand::List { json, conn, net }) => {
            let client = ServiceClient::new(conn.load()?, net.options())?;
            let groups = block_on(client.query_all(Collection::Groups))??;
            if json {
                print_json(&Value::Array(groups), false);
            } else if groups.is_empty() {
                eprintln!("no enrollment groups");
            } else {
                for g in &groups {
                    println!("{}", list_line(g));
                }
            }
            Ok(())
        }
        Some(EnrollCommand::Delete {
            group_id,
            if_match,
            conn,
            net,
        }) => {
            regid::check_id(&group_id, "group ID")?;
            let client = ServiceClient::new(conn.load()?, net.options())?;
            let deleted =
                block_on(client.delete(Collection::Groups, &group_id, if_match.as_deref()))??;
            if !deleted {
                return Err(Error::Service(format!(
                    "enrollment group `{group_id}` does not exist"
                )));
            }
            println!("deleted enrollment group {group_id}");
            Ok(())
        }
        Some(EnrollCommand::Disallow {
            device_cert,
            allow_expired,
            json,
            conn,
            net,
        }) => disallow(&device_cert, allow_expired, json, &conn, &net),
    }
}

fn list_line(g: &Value) -> String {
    let s = |p: &str| g.pointer(p).and_then(Value::as_str);
    let cert = s("/attestation/x509/signingCertificates/primary/info/subjectName")
        .map(str::to_string)
        .or_else(|| s("/attestation/x509/caReferences/primary").map(|r| format!("ref:{r}")))
        .unwrap_or_else(|| s("/attestation/type").unwrap_or("-").to_string());
    format!(
        "{:<32} {:<9} {}",
        s("/enrollmentGroupId").unwrap_or("?"),
        s("/provisioningStatus").unwrap_or("enabled"),
        cert
    )
}

fn create_or_update(a: GroupArgs) -> Result<()> {
    let id = a.group_id.clone().unwrap_or_default();
    regid::check_id(&id, "group ID")?;
    if let Some(r) = &a.ca_ref {
        regid::check_id(r, "--ca-ref name")?;
    }
    if let Some(r) = &a.secondary_ca_ref {
        regid::check_id(r, "--secondary-ca-ref name")?;
    }
    let spec = GroupSpec {
        cert: a
            .cert
            .as_deref()
            .map(|p| read_signing_cert(p, a.allow_expired))
            .transpose()?,
        secondary_cert: a
            .secondary_cert
            .as_deref()
            .map(|p| read_signing_cert(p, a.allow_expired))
            .transpose()?,
        ca_ref: a.ca_ref.clone(),
        secondary_ca_ref: a.secondary_ca_ref.clone(),
        status: a.status.clone(),
        edge: if a.edge {
            Some(true)
        } else if a.no_edge {
            Some(false)
        } else {
            None
        },
        iot_hubs: a.iot_hubs.clone(),
        allocation: a.allocation.clone(),
        webhook_url: a.webhook_url.clone(),
        webhook_api_version: a.webhook_api_version.clone(),
        reprovision: a.reprovision,
        initial_twin: a.initial_twin.as_deref().map(read_twin).transpose()?,
        symmetric_key: a.symmetric_key.then(|| SymmetricKeys {
            primary: a.primary_key.clone(),
            secondary: a.secondary_key.clone(),
        }),
        drop_secondary: a.drop_secondary,
        certificate_policy: match (
            &a.certificate_policy,
            &a.namespace,
            &a.certificate_authority,
            &a.policy,
        ) {
            (Some(p), ..) => Some(p.clone()),
            (None, Some(n), Some(c), Some(p)) => {
                Some(parse_policy(&format!("{n}/{c}/{p}")).map_err(Error::input)?)
            }
            _ => None,
        },
    };

    spec.check()?;
    if a.dry_run {
        // Never connects: shows the create body. An update would merge these
        // fields into the stored record instead.
        let body = build_group(&id, &spec, None)?;
        print_json(&body, a.show_keys);
        eprintln!(
            "(dry run: nothing sent; if the group exists, only the fields given here would change)"
        );
        return Ok(());
    }

    let mut client = ServiceClient::new(a.conn.load()?, a.net.options())?;
    if spec.certificate_policy.is_some() {
        client = client.with_api_version(crate::dps::client::POLICY_API_VERSION);
    }
    let how = Concurrency {
        if_match: a.if_match.as_deref(),
        retry_conflicts: a.retry_conflicts,
    };
    let Upserted { created, stored } = block_on(upsert_group(&client, &id, &spec, how, &|n| {
        eprintln!("enrollment group `{id}` changed meanwhile; reading it again (retry {n})");
    }))??;

    if a.json {
        print_json(&stored, a.show_keys);
    } else {
        println!(
            "{} enrollment group {id}",
            if created { "created" } else { "updated" }
        );
        print_summary(&stored, a.show_keys);
    }
    Ok(())
}

fn disallow(
    path: &Path,
    allow_expired: bool,
    json: bool,
    conn: &ConnArgs,
    net: &NetArgs,
) -> Result<()> {
    let what = path.display().to_string();
    let data = crate::fsio::read_input(path)?;
    let cert = load_cert(&data, &what, allow_expired)?;
    // `disallow` blocks one device: a CA first (a chain in the wrong order,
    // or a group's certificate) would disallow the CA's CN, which no device has.
    if cert.is_ca {
        crate::cert::require_device_first(&crate::cert::read_bundle(&data, &what)?.certs, &what)?;
    }
    let reg_id = cert.common_name.clone().ok_or_else(|| {
        Error::input(format!(
            "{what} has no subject CN, so it names no registration ID"
        ))
    })?;
    let (reg_id, _) = RegistrationId::parse_cn(&reg_id)?;
    let client = ServiceClient::new(conn.load()?, net.options())?;
    let stored = block_on(upsert::disallow(&client, &reg_id, &cert))??;
    if json {
        print_json(&stored, false);
    } else {
        println!("disallowed device {reg_id} (disabled individual enrollment)");
        print!("{}", enrollment::summary(&stored));
    }
    Ok(())
}

/// Parses `--certificate-policy NAMESPACE/CA/POLICY`: three names of
/// letters, digits, `-`, `_` and `.`.
fn parse_policy(s: &str) -> std::result::Result<[String; 3], String> {
    let parts: Vec<&str> = s.split('/').collect();
    let ok = |p: &str| {
        (1..=63).contains(&p.len())
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && !p.starts_with(['.', '-'])
    };
    match parts[..] {
        [ns, ca, policy] if [ns, ca, policy].iter().all(|p| ok(p)) => {
            Ok([ns.to_string(), ca.to_string(), policy.to_string()])
        }
        _ => Err(format!(
            "`{s}` is not NAMESPACE/CA/POLICY: three names of 1-63 letters, digits, `-`, `_` or `.`, e.g. my-namespace/my-ca/device-policy"
        )),
    }
}
