//! `pki emulator`: run a local DPS over HTTPS.

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
/// proof-of-possession calls, on one HTTPS listener. The official Node SDKs
/// always dial port 443, so run `--listen 127.0.0.1:443` for them (ports
/// below 1024 need root or CAP_NET_BIND_SERVICE) and trust the CA with
/// NODE_EXTRA_CA_CERTS; the Python SDKs accept `host:port` in the
/// connection string and trust it with REQUESTS_CA_BUNDLE.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
pki emulator --json\n  \
sudo pki emulator --listen 127.0.0.1:443   # for the Node SDKs\n  \
pki emulator --in-memory --listen 127.0.0.1:0 --json   # throwaway, free port")]
pub struct EmulatorArgs {
    /// Address to listen on (port 0 picks a free port; 443 needs root or CAP_NET_BIND_SERVICE).
    #[arg(long, default_value = "127.0.0.1:8443", value_name = "ADDR")]
    pub listen: String,
    /// Extra host name (or IP) for the server certificate; repeatable.
    /// localhost, 127.0.0.1 and ::1 are always included.
    #[arg(long = "hostname", value_name = "NAME")]
    pub hostnames: Vec<String>,
    /// Directory for the TLS CA, server certificate, SAS key, ID scope and database.
    #[arg(long, default_value = "./dps-emulator", value_name = "DIR")]
    pub data: PathBuf,
    /// Keep enrollments and registrations in memory only (TLS files still go to --data).
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
    /// Do not log refused requests and registrations on stderr.
    #[arg(long, short)]
    pub quiet: bool,
    /// Print one JSON object (connectionString, idScope, caFile, listen, serviceHost,
    /// certificatePolicies) on stdout.
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
    /// Allow certificate-policy validities of 1-6 days (shorter than the service allows), for renewal tests.
    #[arg(long)]
    pub short_certificate_validity: bool,
}

/// Runs the emulator until Ctrl-C or SIGTERM.
pub fn run(args: EmulatorArgs) -> Result<()> {
    let device = args
        .device
        .as_deref()
        .map(|id| envblock::DeviceFiles::find(&args.ca_dir, id))
        .transpose()?;
    if let Some(format) = args.print_env {
        let ep = Endpoint::from_data_dir(
            &args.data,
            &args.listen,
            args.sas_key.as_deref(),
            args.id_scope.as_deref(),
        )?;
        envblock::write_java_truststore(&ep.ca_file, &ep.java_truststore)?;
        let vars = envblock::vars(&ep, device.as_ref());
        return super::output::write_stdout(envblock::render(format, &ep, &vars).as_bytes());
    }
    let certificate_policies = args
        .certificate_policies
        .iter()
        .map(|s| Declared::parse(s, args.short_certificate_validity))
        .collect::<Result<Vec<_>>>()?;
    let opts = Options {
        listen: args.listen,
        hostnames: args.hostnames,
        data: args.data,
        in_memory: args.in_memory,
        sas_key: args.sas_key,
        id_scope: args.id_scope,
        iot_hubs: args.iot_hubs,
        require_verified_ca: args.require_verified_ca,
        log: !args.quiet,
        certificate_policies,
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
            envblock::write_java_truststore(&ep.ca_file, &ep.java_truststore)?;
            println!("pki emulator listening on https://{}", s.listen);
            println!("  service connection string: {}", s.connection_string);
            println!("  ID scope:                  {}", s.id_scope);
            println!("  device endpoint:           {}", s.device_endpoint);
            println!("  CA file to trust:          {}", s.ca_file.display());
            if let Ok(cs) = crate::dps::connection_string::ConnectionString::parse(&s.connection_string) {
                let token = crate::emulator::status::token_for(&cs.key);
                println!("  status page:               {}/?token={token}", s.device_endpoint);
            }
            println!("  (the Node SDKs always dial port 443; Python accepts HostName=host:port)");
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
    })
}
