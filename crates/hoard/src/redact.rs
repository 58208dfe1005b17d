//! Keeping secrets out of what hoard prints.

/// The URL with the password of its user info replaced by `***`.
pub fn url_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::url_password;

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            url_password("postgres://hoard:s3cret@db:5432/hoard"),
            "postgres://hoard:***@db:5432/hoard"
        );
        assert_eq!(
            url_password("postgres://hoard@db/hoard"),
            "postgres://hoard@db/hoard"
        );
        assert_eq!(url_password("sqlite:///x/hoard.db"), "sqlite:///x/hoard.db");
    }
}
