//! `pki emulator`: run a local DPS over HTTPS and MQTT.

use std::path::PathBuf;

use crate::emulator::issuance::Declared;
use crate::emulator::{Options, prepare, serve};
use crate::envblock::{self, Endpoint};
use crate::error::{Error, Result};

/// Arguments of `pki emulator`.
///
/// Runs a local Device Provisioning Service: the service API (enrollment
/// groups, individual enrollments, registration states), the device
/// registration API (X.509 and symmetric-key devices) and the CA certificate
/// proof-of-possession calls, on one HTTPS listener; devices may also
/// register over MQTT 3.1.1 on the MQTT listener (default port 8883, what
/// the Python, C, C#, Java and Node MQTT SDKs dial) and over MQTT on
/// WebSockets at /$iothub/websocket on the HTTPS listener. The official Node
/// and Java SDKs always dial port 443 for HTTPS and WebSockets, so run
/// `--listen 127.0.0.1:443` for them (ports below 1024 need root or
/// CAP_NET_BIND_SERVICE) and trust the CA with NODE_EXTRA_CA_CERTS, or for
/// Java the printed -Djavax.net.ssl.trustStore options (truststore.p12); the
/// Python SDKs accept `host:port` in the connection string and trust it with
/// REQUESTS_CA_BUNDLE.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
pki emulator --json\n  \
sudo \"$(command -v pki)\" emulator --listen 127.0.0.1:443   # Node, Java\n  \
pki emulator --in-memory --listen 127.0.0.1:0 --json   # throwaway, free ports\n  \
pki emulator --no-mqtt   # HTTPS only")]
pub struct EmulatorArgs {
    /// Address to listen on (port 0 picks a free port; 443 needs root or CAP_NET_BIND_SERVICE).
    #[arg(long, default_value = "127.0.0.1:8443", value_name = "ADDR")]
    pub listen: String,
    /// Address of the MQTT listener (MQTT 3.1.1 over TLS). Default: 127.0.0.1:8883,
    /// or a free port when --listen uses port 0.
    #[arg(long, value_name = "ADDR", conflicts_with = "no_mqtt")]
    pub mqtt_listen: Option<String>,
    /// Do not listen for MQTT over TLS (MQTT over WebSockets on the HTTPS listener stays).
    #[arg(long)]
    pub no_mqtt: bool,
    /// Extra host name (or IP) for the server certificate; repeatable.
    /// localhost, 127.0.0.1 and ::1 are always included.
    #[arg(long = "hostname", value_name = "NAME")]
    pub hostnames: Vec<String>,
    /// Directory for the TLS CA, server certificate, SAS key, ID scope and database
    /// [default: ./dps-emulator; with --in-memory, a fresh temporary directory removed on exit].
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Keep everything throwaway: enrollments and registrations in memory, and
    /// (unless --data is given) a fresh TLS CA, SAS key and ID scope in a temporary directory.
    #[arg(long)]
    pub in_memory: bool,
    /// SAS key (base64) of policy provisioningserviceowner, instead of the stored random one.
    #[arg(
        long,
        value_name = "BASE64",
        env = "PKI_EMULATOR_SAS_KEY",
        hide_env_values = true
    )]
    pub sas_key: Option<String>,
    /// ID scope (`0ne` + 8 hex digits), instead of the stored random one.
    #[arg(long, value_name = "SCOPE")]
    pub id_scope: Option<String>,
    /// IoT hub host name for enrollments that name none; repeatable (hashed over the list).
    #[arg(long = "iot-hub", value_name = "HOST")]
    pub iot_hubs: Vec<String>,
    /// Also require a verified CA (from the certificate store) in every device chain.
    #[arg(long)]
    pub require_verified_ca: bool,
    /// Refuse api-versions the real DPS has retired (e.g. the service API's 2019-03-31,
    /// still sent by the C# v1 and Java service SDKs) with its 400, instead of logging a warning.
    #[arg(long)]
    pub strict_api_versions: bool,
    /// Do not log refused requests and registrations on stderr.
    #[arg(long, short)]
    pub quiet: bool,
    /// Print one JSON object (connectionString, idScope, caFile, trustStore, trustStorePassword,
    /// listen, mqttListen, serviceHost, certificatePolicies, and clock when --clock is set) on stdout.
    #[arg(long)]
    pub json: bool,
    /// Print the environment block for the emulator using --data and --listen, then exit
    /// (it need not be running; `eval "$(pki emulator --print-env sh)"`).
    #[arg(long, value_name = "FORMAT")]
    pub print_env: Option<crate::envblock::Format>,
    /// Add this device's PROVISIONING_REGISTRATION_ID, X509_CERT_FILE and X509_KEY_FILE
    /// (its full chain and key under --ca-dir) to the environment block.
    #[arg(long, value_name = "ID")]
    pub device: Option<String>,
    /// The `pki chain new` directory holding --device's files.
    #[arg(long, default_value = ".", value_name = "DIR", requires = "device")]
    pub ca_dir: PathBuf,
    /// A certificate policy for DPS certificate issuance, NAMESPACE/CA/POLICY (or POLICY in
    /// default/default), with its validity in days (7-90, default 30); repeatable. Policies
    /// are also created when an enrollment first names one. Roots go to
    /// <data>/certificate-policies/<ns>/<ca>/<policy>/root.cert.pem.
    #[arg(long = "certificate-policy", value_name = "NAME[:DAYS]")]
    pub certificate_policies: Vec<String>,
    /// Check every validity at this instant instead of real time: device chains, SAS token
    /// expiry (service and device) and the validity of certificates issued for CSRs. An
    /// RFC 3339 instant (2027-01-01T00:00:00Z) or an offset from now (-1d, +30d); the clock
    /// keeps ticking from there. Move it while running with PUT /emulator/clock
    /// ({"now":"…"} or {"offset":"+30d"}, authenticated with the service SAS token).
    #[arg(long, value_name = "INSTANT|OFFSET", allow_hyphen_values = true)]
    pub clock: Option<crate::validity::TimeSpec>,
    /// Allow certificate-policy validities of 1-6 days (shorter than the service allows), for renewal tests.
    #[arg(long)]
    pub short_certificate_validity: bool,
}

/// The default `--data`.
const DEFAULT_DATA: &str = "./dps-emulator";

/// A temporary `--data` for `--in-memory`, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Scratch> {
        let rand = crate::emulator::model::hex_lower(&crate::emulator::model::random_bytes::<8>());
        let dir = std::env::temp_dir().join(format!("pki-emulator-{}-{rand}", std::process::id()));
        crate::fsio::ensure_dir(&dir, crate::fsio::Mode::Secret)?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the emulator until Ctrl-C or SIGTERM.
pub fn run(mut args: EmulatorArgs) -> Result<()> {
    // --in-memory without --data: nothing of this run outlives it.
    let scratch = match (&args.data, args.in_memory && args.print_env.is_none()) {
        (None, true) => Some(Scratch::new()?),
        _ => None,
    };
    let data = match (&args.data, &scratch) {
        (Some(d), _) => d.clone(),
        (None, Some(s)) => s.0.clone(),
        (None, None) => PathBuf::from(DEFAULT_DATA),
    };
    args.data = Some(data.clone());
    let args = args;
    let device = args
        .device
        .as_deref()
        .map(|id| envblock::DeviceFiles::find(&args.ca_dir, id))
        .transpose()?;
    if let Some(format) = args.print_env {
        let ep = Endpoint::from_data_dir(
            &data,
            &args.listen,
            args.sas_key.as_deref(),
            args.id_scope.as_deref(),
        )?;
        crate::emulator::truststore::write(&data)?;
        let vars = envblock::vars(&ep, device.as_ref());
        return super::output::write_stdout(envblock::render(format, &ep, &vars).as_bytes());
    }
    let mqtt_listen = match (args.no_mqtt, args.mqtt_listen) {
        (true, _) => None,
        (false, Some(m)) => Some(m),
        (false, None) => Some(crate::emulator::default_mqtt_listen(&args.listen)),
    };
    let certificate_policies = args
        .certificate_policies
        .iter()
        .map(|s| Declared::parse(s, args.short_certificate_validity))
        .collect::<Result<Vec<_>>>()?;
    let opts = Options {
        mqtt_listen,
        listen: args.listen,
        hostnames: args.hostnames,
        data,
        in_memory: args.in_memory,
        sas_key: args.sas_key,
        id_scope: args.id_scope,
        iot_hubs: args.iot_hubs,
        require_verified_ca: args.require_verified_ca,
        strict_api_versions: args.strict_api_versions,
        log: !args.quiet,
        certificate_policies,
        clock: args.clock,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::failed(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async move {
        let prepared = prepare(&opts).await?;
        let s = &prepared.started;
        if args.json {
            let line = serde_json::to_string(s).map_err(|e| Error::failed(e.to_string()))?;
            println!("{line}");
        } else {
            let ep = Endpoint::new(
                s.connection_string.clone(),
                s.service_host.clone(),
                s.id_scope.clone(),
                s.ca_file.clone(),
            );
            println!("pki emulator listening on https://{}", s.listen);
            println!("  service connection string: {}", s.connection_string);
            println!("  ID scope:                  {}", s.id_scope);
            println!("  device endpoint:           {}", s.device_endpoint);
            if let Some(c) = &s.clock {
                println!("  emulator clock:            {c} (--clock; PUT /emulator/clock moves it)");
            }
            let ca = s.ca_file.display();
            println!("  CA file to trust:          {ca}");
            println!("    Node:   NODE_EXTRA_CA_CERTS={ca}  (the Node SDKs always use port 443)");
            println!("    Python: REQUESTS_CA_BUNDLE={ca}  (accepts HostName=host:port)");
            let java = crate::emulator::truststore::java_options(&s.trust_store);
            println!("    Java:   java {java}  (the Java SDKs always use port 443)");
            match s.mqtt_listen {
                Some(m) => {
                    println!("  MQTT (device SDKs):        mqtts://{m}");
                    println!(
                        "    provisioning host localhost, port {} (the SDKs dial 8883), ID scope {}, trust {ca}",
                        m.port(),
                        s.id_scope
                    );
                    println!(
                        "    Python: ProvisioningDeviceClient.create_from_x509_certificate(provisioning_host=\"localhost\", …, server_verification_cert=open(\"{ca}\").read())"
                    );
                }
                None => println!("  MQTT over TLS:             off (--no-mqtt)"),
            }
            println!(
                "  MQTT over WebSockets:      wss://{}/$iothub/websocket (subprotocol mqtt; the SDKs dial 443)",
                s.listen
            );
            println!("  status page:               {}", s.status_page);
            println!("Environment for the SDK samples (also: pki emulator --print-env sh|powershell|dotenv):");
            let vars = envblock::vars(&ep, device.as_ref());
            print!("{}", envblock::render(envblock::Format::Sh, &ep, &vars));
            for p in &s.certificate_policies {
                println!(
                    "  certificate policy {} ({} days), root: {}",
                    p.name,
                    p.validity_days,
                    p.root_file
                        .as_deref()
                        .unwrap_or(std::path::Path::new(""))
                        .display()
                );
            }
            println!(
                "  storage: {}",
                if opts.in_memory {
                    "in memory (lost on exit)".to_string()
                } else {
                    opts.data.join("dps.redb").display().to_string()
                }
            );
            println!("Press Ctrl-C to stop.");
        }
        // Scripts read the start-up line through a pipe: flush it now.
        use std::io::Write;
        let _ = std::io::stdout().flush();
        serve(prepared).await
    })?;
    drop(scratch);
    Ok(())
}
