"""Free-mail and disposable email domains, and a small registrable-domain helper.

Why a Python module and not a data file: setuptools only ships non-Python package data when
the project declares it, and a module needs no packaging configuration. The lists are
deliberately "common ones", not exhaustive: a domain missing here only means the email-domain
source derives a company for it (the next source in the chain, or a custom one, can do better).
A false positive (a real company treated as free mail) only means no company is
derived, which is the safe direction.

``registrable_domain`` uses a short list of multi-label public suffixes instead of the full
Public Suffix List to stay dependency-free; it is good enough to fold ``eu.acme.com`` into
``acme.com`` and to keep ``acme.co.uk`` whole.
"""

from __future__ import annotations

# fmt: off
# Providers with many country domains (yahoo.fr, hotmail.co.uk, gmx.at, ...): matched on the
# registrable label, so every country variant counts. Only distinctive brand names belong here.
FREE_MAIL_BRANDS: frozenset[str] = frozenset({
    "gmail", "googlemail", "yahoo", "ymail", "rocketmail", "hotmail", "outlook", "windowslive",
    "aol", "gmx", "yandex", "protonmail", "icloud", "rediffmail", "libero", "seznam", "wanadoo",
    "laposte", "t-online", "rambler", "naver", "hanmail", "tutanota", "zohomail", "mailfence",
    "fastmail", "hushmail", "posteo", "sina", "sohu",
})

FREE_MAIL_DOMAINS: frozenset[str] = frozenset({
    # Google, Microsoft, Apple, Yahoo, AOL
    "gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "live.com", "msn.com",
    "passport.com", "live.co.uk", "live.fr", "live.de", "live.it", "live.nl", "live.ca",
    "live.com.au", "icloud.com", "me.com", "mac.com", "yahoo.com", "ymail.com", "aol.com",
    "aim.com", "verizon.net", "att.net", "sbcglobal.net", "bellsouth.net", "comcast.net",
    "cox.net", "charter.net", "earthlink.net", "juno.com", "netzero.net", "optonline.net",
    "frontier.com", "windstream.net", "roadrunner.com", "rr.com",
    # Privacy-focused and independent
    "proton.me", "protonmail.com", "protonmail.ch", "pm.me", "tutanota.com", "tutanota.de",
    "tutamail.com", "tuta.io", "tuta.com", "keemail.me", "fastmail.com", "fastmail.fm",
    "hushmail.com", "hush.com", "mailfence.com", "posteo.de", "posteo.net", "runbox.com",
    "disroot.org", "riseup.net", "startmail.com", "zoho.com", "zohomail.com", "zohomail.eu",
    "mail.com", "email.com", "usa.com", "consultant.com", "myself.com", "post.com",
    "inbox.com", "lycos.com", "excite.com", "rediffmail.com", "hey.com", "duck.com",
    # Germany, Austria, Switzerland
    "gmx.de", "gmx.net", "gmx.at", "gmx.ch", "gmx.com", "web.de", "t-online.de",
    "freenet.de", "arcor.de", "1und1.de", "online.de", "mail.de", "email.de", "kabelmail.de",
    "bluewin.ch", "hispeed.ch", "aon.at", "chello.at",
    # France, Belgium, Netherlands
    "orange.fr", "wanadoo.fr", "free.fr", "sfr.fr", "neuf.fr", "laposte.net", "bbox.fr",
    "numericable.fr", "club-internet.fr", "skynet.be", "telenet.be", "ziggo.nl", "kpnmail.nl",
    "planet.nl", "home.nl", "hetnet.nl", "xs4all.nl", "casema.nl",
    # Italy, Spain, Portugal
    "libero.it", "virgilio.it", "tiscali.it", "alice.it", "tim.it", "tin.it", "inwind.it",
    "fastwebnet.it", "email.it", "terra.es", "telefonica.net", "movistar.es", "sapo.pt",
    "iol.pt", "clix.pt",
    # United Kingdom, Ireland
    "btinternet.com", "btopenworld.com", "sky.com", "virginmedia.com", "ntlworld.com",
    "talktalk.net", "tiscali.co.uk", "blueyonder.co.uk", "eircom.net",
    # Nordics, Central and Eastern Europe
    "telia.com", "online.no", "start.no", "hotmail.no", "seznam.cz", "centrum.cz",
    "atlas.cz", "email.cz", "post.cz", "wp.pl", "o2.pl", "onet.pl", "interia.pl", "op.pl",
    "gazeta.pl", "poczta.fm", "tlen.pl", "freemail.hu", "citromail.hu", "abv.bg", "mail.bg",
    "inbox.lv", "inbox.lt", "mail.ee", "azet.sk", "centrum.sk", "zoznam.sk",
    # Russia, Ukraine and neighbours
    "mail.ru", "inbox.ru", "list.ru", "bk.ru", "internet.ru", "yandex.ru", "yandex.com",
    "ya.ru", "yandex.ua", "yandex.by", "yandex.kz", "rambler.ru", "ukr.net", "i.ua",
    "meta.ua",
    # Asia-Pacific
    "qq.com", "foxmail.com", "163.com", "126.com", "yeah.net", "sina.com", "sina.cn",
    "sohu.com", "aliyun.com", "139.com", "189.cn", "naver.com", "hanmail.net", "daum.net",
    "kakao.com", "nate.com", "yahoo.co.jp", "docomo.ne.jp", "ezweb.ne.jp", "softbank.ne.jp",
    "i.softbank.jp", "nifty.com", "biglobe.ne.jp", "ocn.ne.jp", "so-net.ne.jp",
    "rediff.com", "sify.com", "bigpond.com", "bigpond.net.au", "optusnet.com.au",
    "iinet.net.au", "tpg.com.au", "xtra.co.nz",
    # Americas
    "uol.com.br", "bol.com.br", "terra.com.br", "ig.com.br", "globo.com", "r7.com",
    "prodigy.net.mx", "shaw.ca", "rogers.com", "sympatico.ca", "videotron.ca", "telus.net",
    "fibertel.com.ar", "speedy.com.ar",
    # Africa, Middle East
    "mweb.co.za", "webmail.co.za", "telkomsa.net", "walla.co.il", "walla.com",
})

DISPOSABLE_DOMAINS: frozenset[str] = frozenset({
    # Mailinator family
    "mailinator.com", "mailinator.net", "mailinator.org", "mailinator2.com", "mailinater.com",
    "notmailinator.com", "reallymymail.com", "sogetthis.com", "spamherelots.com",
    "thisisnotmyrealemail.com", "binkmail.com", "bobmail.info", "chammy.info", "devnullmail.com",
    "letthemeatspam.com", "mailismagic.com", "mailtothis.com", "monumentmail.com",
    "safetymail.info", "sendspamhere.com", "spamhereplease.com", "suremail.info", "tradermail.info",
    "veryrealemail.com", "zippymail.info", "streetwisemail.com", "spamthisplease.com",
    "mailin8r.com",
    # Guerrilla Mail family
    "guerrillamail.com", "guerrillamail.net", "guerrillamail.org", "guerrillamail.biz",
    "guerrillamail.de", "guerrillamail.info", "guerrillamailblock.com", "sharklasers.com", "grr.la",
    "pokemail.net", "spam4.me",
    # 10 minute / temp mail style services
    "10minutemail.com", "10minutemail.net", "10minutemail.co.uk", "10minutemail.de",
    "10minutemail.org", "10minutemail.be", "10minutemail.info", "10minemail.com",
    "20minutemail.com", "20minutemail.it", "30minutemail.com", "60minutemail.com", "temp-mail.org",
    "temp-mail.io", "temp-mail.ru", "temp-mail.com", "tempmail.com", "tempmail.net", "tempmail.de",
    "tempmail.us", "tempmail.dev", "tempmail.plus", "tempmailo.com", "tempmail2.com",
    "tempmailaddress.com", "tempmail.email", "tempmail.it", "tempinbox.com", "tempinbox.co.uk",
    "tempomail.fr", "temporaryemail.net", "temporaryemail.us", "temporaryinbox.com",
    "temporarymail.org", "tempemail.net", "tempemail.com", "tempemail.co.za", "tempr.email",
    "tempail.com", "tempymail.com", "tmpmail.org", "tmpmail.net", "tmpeml.com", "tmails.net",
    "tmail.ws", "tempm.com", "mytemp.email", "my10minutemail.com", "minutemail.com",
    "emailtemporanea.com", "emailtemporanea.net", "emailtemporar.ro", "emailtemporario.com.br",
    "correotemporal.org", "wegwerfmail.de", "wegwerfmail.net", "wegwerfmail.org", "wegwerfemail.de",
    "wegwerf-email.de", "wegwerfadresse.de", "einmalmail.de", "trash-mail.com", "trash-mail.de",
    "trash-mail.at", "trashmail.com", "trashmail.net", "trashmail.de", "trashmail.me",
    "trashmail.io", "trashmail.at", "trashmail.ws", "trashmail.org", "trashmailer.com",
    "trashemail.de", "trash2009.com", "kurzepost.de", "objectmail.com", "proxymail.eu", "rcpt.at",
    # YOPmail family
    "yopmail.com", "yopmail.fr", "yopmail.net", "cool.fr.nf", "jetable.fr.nf", "nospam.ze.tc",
    "nomail.xl.cx", "mega.zik.dj", "speed.1s.fr", "courriel.fr.nf", "moncourrier.fr.nf",
    "monemail.fr.nf", "monmail.fr.nf", "jetable.org", "jetable.com", "jetable.net",
    # Fake mail generator family
    "armyspy.com", "cuvox.de", "dayrep.com", "einrot.com", "fleckens.hu", "gustr.com",
    "jourrapide.com", "rhyta.com", "superrito.com", "teleworm.us",
    # Nada / Getnada / Maildrop / Dispostable and friends
    "getnada.com", "nada.email", "nada.ltd", "maildrop.cc", "dispostable.com", "discard.email",
    "discardmail.com", "discardmail.de", "spambog.com", "spambog.de", "spambog.ru", "mailnesia.com",
    "mintemail.com", "mailcatch.com", "mailexpire.com", "mailnull.com", "mailmoat.com",
    "mailforspam.com", "mailfreeonline.com", "mailimate.com", "mailpoof.com", "mailsac.com",
    "mailslurp.com", "mailtemp.info", "mailtemp.net", "mailzilla.com", "mailzilla.org",
    "mail-temp.com", "mail-temporaire.fr", "mail-temporaire.com", "mailtemporaire.com",
    "mailtemporaire.fr", "moakt.com", "moakt.cc", "moakt.ws", "mohmal.com", "mohmal.in",
    "mohmal.im", "mohmal.tech", "emailondeck.com", "emailfake.com", "fakemail.net", "fakemail.fr",
    "fakeinbox.com", "fakeinbox.net", "fakemailgenerator.com", "fake-mail.net", "fakermail.com",
    "burnermail.io", "throwawaymail.com", "throwam.com", "throwawayemailaddress.com",
    "throwaway.email", "33mail.com", "spamgourmet.com", "spamgourmet.net", "spamgourmet.org",
    "spamex.com", "spamfree24.org", "spamfree24.de", "spamfree24.com", "spamfree24.eu",
    "spamfree24.info", "spamfree24.net", "spaml.com", "spaml.de", "spamavert.com", "spambox.us",
    "spamcero.com", "spamcorptastic.com", "spamcowboy.com", "spamday.com", "spamdecoy.net",
    "spamify.com", "spaminator.de", "spamkill.info", "spammotel.com", "spamobox.com", "spamoff.de",
    "spamslicer.com", "spamspot.com", "spamstack.net", "spamtrail.com", "spamtrap.ro",
    "incognitomail.org", "incognitomail.com", "incognitomail.net", "anonbox.net", "anonymbox.com",
    "mytrashmail.com", "mt2009.com", "mt2014.com", "no-spam.ws", "nospamfor.us", "nospam4.us",
    "noclickemail.com", "nowmymail.com", "oneoffemail.com", "onewaymail.com", "pookmail.com",
    "putthisinyourspamdatabase.com", "quickinbox.com", "rmqkr.net", "sneakemail.com",
    "sofimail.com", "soodonims.com", "spam.la", "spam.su", "spamail.de", "tempalias.com",
    "thankyou2010.com", "trbvm.com", "twinmail.de", "tyldd.com", "wh4f.org", "whyspam.me",
    "willselfdestruct.com", "wronghead.com", "wuzup.net", "wuzupmail.net", "xagloo.com",
    "xemaps.com", "xents.com", "xmaily.com", "xoxy.net", "yep.it", "yuurok.com", "zehnminuten.de",
    "zehnminutenmail.de", "zetmail.com", "zoemail.org", "zomg.info", "owlpic.com", "emltmp.com",
    "emlhub.com", "emlpro.com", "inboxkitten.com", "harakirimail.com", "mailde.de", "mailde.info",
    "dropmail.me", "10mail.org", "10mail.com", "yomail.info", "linshiyouxiang.net", "mvrht.com",
    "mvrht.net", "byom.de", "dodgit.com", "dodgeit.com", "e4ward.com", "emailias.com",
    "emailmiser.com", "emailsensei.com", "emailwarden.com", "emailx.at.hm", "emailxfer.com",
    "emz.net", "enterto.com", "ephemail.net", "etranquil.com", "etranquil.net", "etranquil.org",
    "explodemail.com", "filzmail.com", "fizmail.com", "frapmail.com", "get1mail.com", "get2mail.fr",
    "getairmail.com", "getonemail.com", "getonemail.net", "gishpuppy.com", "greensloth.com",
    "haltospam.com", "hatespam.org", "hidemail.de", "hochsitze.com", "hulapla.de", "ieatspam.eu",
    "ieatspam.info", "ihateyoualot.info", "imails.info", "inboxclean.com", "inboxclean.org",
    "insorg-mail.info", "ipoo.org", "jnxjn.com", "kasmail.com", "kaspop.com", "killmail.com",
    "killmail.net", "klzlk.com", "koszmail.pl", "lhsdv.com", "lopl.co.cc", "lr78.com",
    "maboard.com", "mail4trash.com", "mailbidon.com", "mailblocks.com", "mailcatch.co",
    "maileater.com", "mailme.lv", "mailme24.com", "mailmetrash.com", "mailshell.com",
    "mailsiphon.com", "mailtome.de", "mailtrash.net", "mailzi.ru", "meltmail.com",
    "messagebeamer.de", "mierdamail.com", "myphantomemail.com", "netmails.com", "netmails.net",
    "neverbox.com", "nobulk.com", "nogmailspam.info", "nomail2me.com", "nospammail.net",
    "nurfuerspam.de", "nwldx.com", "pjjkp.com", "poofy.org", "prtnx.com", "recursor.net",
    "regbypass.com", "rejectmail.com", "rklips.com", "safersignup.de", "saynotospams.com",
    "selfdestructingmail.com", "shiftmail.com", "shitmail.me", "shortmail.net", "sibmail.com",
    "skeefmail.com", "slaskpost.se", "slopsbox.com", "snakemail.com", "snkmail.com", "spamgoes.in",
    "supergreatmail.com", "supermailer.jp", "temporarily.de", "thanksnospam.info", "tilien.com",
    "tmailinator.com", "trashdevil.com", "trashdevil.de", "trashymail.com", "trashymail.net",
    "turual.com", "uplipht.com", "venompen.com", "wilemail.com", "yapped.net", "crazymailing.com",
    "mailhazard.com", "mailhz.me", "mailnator.com", "emailnax.com", "fexbox.org", "fexpost.com",
    "tempmailer.com", "tempmailer.de", "luxusmail.org", "mailbox.in.ua", "spymail.one",
})

# Multi-label public suffixes under which the registrable domain has three labels.
_MULTI_LABEL_SUFFIXES: frozenset[str] = frozenset({
    "co.uk", "org.uk", "ac.uk", "gov.uk", "ltd.uk", "plc.uk", "me.uk", "net.uk",
    "com.au", "net.au", "org.au", "edu.au", "gov.au", "co.nz", "net.nz", "org.nz",
    "co.jp", "ne.jp", "or.jp", "ac.jp", "co.kr", "or.kr", "co.in", "net.in", "org.in",
    "co.za", "org.za", "com.br", "net.br", "org.br", "com.mx", "com.ar", "com.co",
    "com.cn", "net.cn", "org.cn", "com.hk", "com.sg", "com.tw", "com.tr", "com.my",
    "co.id", "co.il", "co.th", "com.ph", "com.pk", "com.ng", "com.eg", "com.sa",
    "co.ke", "com.ua", "com.pl", "co.at", "or.at", "com.es", "com.pt", "com.gr",
    "fr.nf", "at.hm", "co.cc", "in.ua",
})

# fmt: on


def registrable_domain(domain: str) -> str:
    """``eu.mail.acme.com`` -> ``acme.com``; ``shop.acme.co.uk`` -> ``acme.co.uk``."""
    labels = domain.lower().strip(".").split(".")
    if len(labels) <= 2:
        return ".".join(labels)
    keep = 3 if ".".join(labels[-2:]) in _MULTI_LABEL_SUFFIXES else 2
    return ".".join(labels[-keep:])


def _brand(domain: str) -> str:
    return registrable_domain(domain).split(".")[0]


def is_free_mail(domain: str) -> bool:
    """True for consumer mailbox providers (any country domain of the big brands)."""
    domain = domain.lower().strip(".")
    return (
        domain in FREE_MAIL_DOMAINS
        or registrable_domain(domain) in FREE_MAIL_DOMAINS
        or _brand(domain) in FREE_MAIL_BRANDS
    )


def is_disposable(domain: str) -> bool:
    """True for throwaway-address services (the domain or its registrable domain)."""
    domain = domain.lower().strip(".")
    return domain in DISPOSABLE_DOMAINS or registrable_domain(domain) in DISPOSABLE_DOMAINS


def is_personal_domain(domain: str) -> bool:
    """Free-mail or disposable: an address there says nothing about the person's company."""
    return is_free_mail(domain) or is_disposable(domain)
