//! `userlist NAME` sections: the users (and their crypt(3) or clear passwords) of stats pages.

use super::super::lex::Line;
use super::super::{Password, UserEntry, Userlist};
use super::{arity, Diag, Parser, Section};

impl Parser {
    pub(super) fn userlist_section(&mut self, sec: &Section<'_>) {
        let h = sec.header;
        if !arity(&mut self.diag, h, 1, 1, 1) {
            return;
        }
        let name = &h.words[1];
        if let Some(first) = self.userlists.iter().find(|u| u.name == *name) {
            self.diag.err(
                &h.loc,
                format!(
                    "userlist name '{name}' is used twice (first at {})",
                    first.loc
                ),
            );
        }
        let mut list = Userlist {
            name: name.clone(),
            loc: h.loc.clone(),
            users: Vec::new(),
        };
        for line in sec.body {
            let w = &line.words;
            let d = &mut self.diag;
            match w[0].as_str() {
                "user" => user_line(d, &mut list, line),
                "group" => {
                    if arity(d, line, 1, 1, 3) && w.len() > 2 && (w[2] != "users" || w.len() != 4) {
                        d.err(
                            &line.loc,
                            format!("'group {}': expects 'users U1,U2' after the name", w[1]),
                        );
                    }
                }
                kw => d.err(
                    &line.loc,
                    format!("unknown keyword '{kw}' in 'userlist' section '{name}'"),
                ),
            }
        }
        self.userlists.push(list);
    }
}

/// `user NAME password|insecure-password PASS [groups G1,G2]`, into `list`.
fn user_line(d: &mut Diag, list: &mut Userlist, line: &Line) {
    let w = &line.words;
    if !arity(d, line, 1, 3, 5) {
        return;
    }
    if w[2] == "password" && !w[3].starts_with('$') {
        d.warn(
            &line.loc,
            format!(
                "'user {}': the password does not look like a crypt(3) hash ($6$..., $5$..., \
                 $1$...); it is checked with crypt(3) anyway",
                w[1]
            ),
        );
    }
    if list.users.iter().any(|u| u.name == w[1]) {
        d.err(
            &line.loc,
            format!("userlist '{}': user '{}' is defined twice", list.name, w[1]),
        );
    }
    list.users.push(UserEntry {
        name: w[1].clone(),
        password: if w[2] == "password" {
            Password::Crypt(w[3].clone())
        } else {
            Password::Clear(w[3].clone())
        },
    });
    if !matches!(w[2].as_str(), "password" | "insecure-password") {
        d.err(
            &line.loc,
            format!(
                "'user {}': expects 'password' or 'insecure-password', got '{}'",
                w[1], w[2]
            ),
        );
    } else if w.len() > 4 && (w[4] != "groups" || w.len() != 6) {
        d.err(
            &line.loc,
            format!("'user {}': expects 'groups G1,G2' after the password", w[1]),
        );
    }
}
