"""Deterministic benchmark pages: a realistic news front page with a few dozen tags.

`make_page(size, seed)` returns HTML of about `size` bytes: a head with preconnect
links, the GA4 gtag bootstrap, the GTM snippet and its noscript iframe, the Meta Pixel
with its noscript img, then articles (hundreds of ordinary elements) with third-party
pixels, scripts and YouTube iframes sprinkled between them. Only standard library.
"""

from __future__ import annotations

import random

WORDS = (
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore "
    "et dolore magna aliqua enim ad minim veniam quis nostrud exercitation ullamco laboris nisi aliquip"
).split()

HEAD_TAGS = """<link rel="preconnect" href="https://www.google-analytics.com">
<link rel="preconnect" href="https://connect.facebook.net" crossorigin>
<link rel="dns-prefetch" href="//stats.g.doubleclick.net">
<link rel="preconnect" href="https://fonts.example-cdn.com">
<script async src="https://www.googletagmanager.com/gtag/js?id=G-ABCDE12345"></script>
<script>
  window.dataLayer = window.dataLayer || [];
  function gtag(){dataLayer.push(arguments);}
  gtag('js', new Date());
  gtag('config', 'G-ABCDE12345', { 'anonymize_ip': true });
</script>
<script>(function(w,d,s,l,i){w[l]=w[l]||[];w[l].push({'gtm.start':
new Date().getTime(),event:'gtm.js'});var f=d.getElementsByTagName(s)[0],
j=d.createElement(s),dl=l!='dataLayer'?'&l='+l:'';j.async=true;j.src=
'https://www.googletagmanager.com/gtm.js?id='+i+dl;f.parentNode.insertBefore(j,f);
})(window,document,'script','dataLayer','GTM-XXXX');</script>
<script async src="https://connect.facebook.net/en_US/fbevents.js"></script>
<script>
!function(f,b,e,v,n,t,s){if(f.fbq)return;n=f.fbq=function(){n.callMethod?
n.callMethod.apply(n,arguments):n.queue.push(arguments)};if(!f._fbq)f._fbq=n;
n.push=n;n.loaded=!0;n.version='2.0';n.queue=[];}(window, document,'script');
fbq('init', '123456789012345'); fbq('track', 'PageView');
</script>
<noscript><img height="1" width="1" style="display:none" src="https://www.facebook.com/tr?id=123456789012345&amp;ev=PageView&amp;noscript=1"/></noscript>
"""

PIXEL_HOSTS = (
    "bat.bing.com",
    "px.ads.linkedin.com",
    "ct.pinterest.com",
    "sb.scorecardresearch.com",
    "analytics.twitter.com",
    "www.facebook.com",
    "cm.g.doubleclick.net",
    "analytics.tiktok.com",
)
SCRIPT_HOSTS = (
    "static.hotjar.com",
    "www.clarity.ms",
    "snap.licdn.com",
    "cdn.segment.com",
    "js.hs-scripts.com",
    "widget.intercom.io",
    "static.cloudflareinsights.com",
    "analytics.tiktok.com",
    "s.pinimg.com",
)
YOUTUBE = (
    '<iframe width="560" height="315" src="https://www.youtube.com/embed/dQw4w9WgXcQ?rel=0" '
    'title="YouTube video player" frameborder="0" allowfullscreen></iframe>\n'
)


def _para(rng: random.Random, n: int) -> str:
    out = []
    for _ in range(n):
        w = rng.choice(WORDS)
        r = rng.random()
        if r < 0.06:
            out.append(f'<a href="/articles/{rng.randint(1, 9999)}" class="inline-link">{w}</a>')
        elif r < 0.09:
            out.append(f"<strong>{w}</strong>")
        elif r < 0.11:
            out.append(f"<em>{w}</em>")
        else:
            out.append(w)
    return " ".join(out)


def _article(rng: random.Random, idx: int) -> str:
    parts = [
        f'<article class="post card" id="post-{idx}">\n',
        f'  <header><h2><a href="/p/{idx}">{_para(rng, 6)}</a></h2><time datetime="2026-05-{idx % 28 + 1:02d}">'
        f"May {idx % 28 + 1}</time></header>\n",
        f'  <figure><img src="/img/photo-{idx}.jpg" srcset="/img/photo-{idx}@2x.jpg 2x" width="640" height="360" '
        f'loading="lazy" alt="photo {idx}"><figcaption>{_para(rng, 8)}</figcaption></figure>\n',
    ]
    for _ in range(rng.randint(2, 4)):
        parts.append(f'  <p class="lead">{_para(rng, rng.randint(30, 70))}</p>\n')
    parts.append(
        '  <ul class="tags">'
        + "".join(f'<li><a href="/tag/{rng.choice(WORDS)}" rel="tag">{rng.choice(WORDS)}</a></li>' for _ in range(4))
        + "</ul>\n"
    )
    parts.append('  <div class="share"><button type="button" class="btn">Share</button></div>\n</article>\n')
    return "".join(parts)


def _third_party(rng: random.Random, i: int) -> str:
    kind = i % 4
    if kind in (0, 1):
        host = rng.choice(PIXEL_HOSTS)
        return f'<img src="https://{host}/p?id={rng.randint(1, 10**9)}" width="1" height="1" alt="">\n'
    if kind == 2:
        host = rng.choice(SCRIPT_HOSTS)
        return f'<script async src="https://{host}/tag.js?v={rng.randint(1, 999)}"></script>\n'
    return YOUTUBE


def make_page(size: int, seed: int = 1, tags: int | None = None) -> bytes:
    """A page of about `size` bytes with `tags` third-party tags in the body."""
    rng = random.Random(seed)
    if tags is None:
        tags = max(2, min(36, size // 4000))
    head = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>Example News</title>\n'
        + HEAD_TAGS
        + '<link rel="stylesheet" href="/static/site.css">\n<script defer src="/static/app.js"></script>\n'
        + "</head>\n<body>\n"
        '<noscript><iframe src="https://www.googletagmanager.com/ns.html?id=GTM-XXXX" height="0" width="0" '
        'style="display:none;visibility:hidden"></iframe></noscript>\n<main>\n'
    )
    tail = "</main>\n<footer><p>" + _para(rng, 40) + "</p></footer>\n</body>\n</html>\n"
    body: list[str] = []
    total = len(head) + len(tail)
    idx = 0
    while total < size:
        article = _article(rng, idx)
        body.append(article)
        total += len(article)
        idx += 1
    step = max(1, len(body) // (tags + 1))
    out: list[str] = []
    placed = 0
    for i, article in enumerate(body):
        out.append(article)
        if placed < tags and i % step == step - 1:
            out.append(_third_party(rng, placed))
            placed += 1
    while placed < tags:
        out.append(_third_party(rng, placed))
        placed += 1
    return (head + "".join(out) + tail).encode()


def make_small_page(seed: int = 7) -> bytes:
    """About 2 KB: the gtag snippet, five paragraphs and one pixel."""
    rng = random.Random(seed)
    text = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>Small</title>\n'
        '<script async src="https://www.googletagmanager.com/gtag/js?id=G-ABCDE12345"></script>\n'
        "<script>window.dataLayer=window.dataLayer||[];function gtag(){dataLayer.push(arguments);}"
        "gtag('js',new Date());gtag('config','G-ABCDE12345');</script>\n</head>\n<body>\n<main>\n"
    )
    text += "".join(f"<p>{_para(rng, 25)}</p>\n" for _ in range(5))
    text += f'<img src="https://bat.bing.com/p?id={rng.randint(1, 10**9)}" width="1" height="1" alt="">\n'
    text += "</main>\n</body>\n</html>\n"
    data = text.encode()
    return data


def make_listing_page(size: int = 100 * 1024, images: int = 850, seed: int = 3) -> bytes:
    """A shop category page of about `size` bytes: `images` product tiles, each a plainly
    relative first-party `<img>` (the element-heavy case), and the usual head tags."""
    rng = random.Random(seed)
    head = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>Category</title>\n'
        + HEAD_TAGS
        + '<link rel="stylesheet" href="/static/shop.css">\n</head>\n<body>\n<main><ul class="grid">\n'
    )
    tiles = []
    for i in range(images):
        tiles.append(
            f'<li><a href="/p/{i}"><img src="/img/p{i}.jpg" alt="Item {i}" width="160" height="160">'
            f"</a><span>{rng.randint(5, 500)}.99</span></li>\n"
        )
    body = "".join(tiles)
    tail = "</ul></main>\n<footer><p>" + _para(rng, 40) + "</p></footer>\n</body>\n</html>\n"
    filler = max(0, size - len(head) - len(body) - len(tail))
    pad = "".join(f"<p>{_para(rng, 30)}</p>\n" for _ in range(filler // 220 + 1))[:filler]
    return (head + body + pad.rpartition("</p>")[0] + ("</p>\n" if pad else "") + tail).encode()
