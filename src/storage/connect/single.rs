//! One host of a multi-host config, on its own: tokio-postgres's `Config` has no way to
//! drop hosts, so the single-host config is built from every public setting.

use tokio_postgres::config::Host;
use tokio_postgres::Config;

/// `config` with host `i` only (its address and port), everything else as it is.
pub(super) fn single_host(config: &Config, i: usize) -> Config {
    let mut one = Config::new();
    if let Some(user) = config.get_user() {
        one.user(user);
    }
    if let Some(password) = config.get_password() {
        one.password(password);
    }
    if let Some(dbname) = config.get_dbname() {
        one.dbname(dbname);
    }
    if let Some(options) = config.get_options() {
        one.options(options);
    }
    if let Some(name) = config.get_application_name() {
        one.application_name(name);
    }
    match config.get_hosts().get(i) {
        Some(Host::Tcp(name)) => one.host(name),
        Some(Host::Unix(path)) => one.host_path(path),
        None => &mut one,
    };
    if let Some(addr) = config.get_hostaddrs().get(i) {
        one.hostaddr(*addr);
    }
    let ports = config.get_ports();
    if let Some(port) = ports.get(i).or(ports.first()) {
        one.port(*port);
    }
    copy_settings(config, &mut one);
    one
}

/// Everything of `from` that is not a host, a login or a name.
fn copy_settings(from: &Config, to: &mut Config) {
    to.ssl_mode(from.get_ssl_mode())
        .ssl_negotiation(from.get_ssl_negotiation())
        .keepalives(from.get_keepalives())
        .keepalives_idle(from.get_keepalives_idle())
        .target_session_attrs(from.get_target_session_attrs())
        .channel_binding(from.get_channel_binding())
        .load_balance_hosts(from.get_load_balance_hosts());
    if let Some(t) = from.get_connect_timeout() {
        to.connect_timeout(*t);
    }
    if let Some(t) = from.get_tcp_user_timeout() {
        to.tcp_user_timeout(*t);
    }
    if let Some(t) = from.get_keepalives_interval() {
        to.keepalives_interval(t);
    }
    if let Some(n) = from.get_keepalives_retries() {
        to.keepalives_retries(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_database_url;

    #[test]
    fn one_host_keeps_every_setting() {
        // Config is PartialEq: a setting single_host forgot makes these differ.
        for url in [
            "postgres://u:p@h:5433/db?connect_timeout=7&target_session_attrs=read-write&sslmode=require&application_name=x&options=-c%20a%3D1&channel_binding=require",
            "postgres://u@%2Frun%2Fpg/db?keepalives=0",
            "postgres://u:p@/db?hostaddr=10.0.0.1&port=6543",
        ] {
            let config = parse_database_url(url).expect(url).config;
            assert_eq!(single_host(&config, 0), config, "{url}");
        }
    }
}
