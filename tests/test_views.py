import pytest
from django.test import Client
from django_mitto.models import Message, DeliveryReport

URL = "/mitto/callback/callback-secret/"

@pytest.fixture
def msg(settings, db):
    settings.MITTO_SEND_ON_SAVE = False
    m = Message.objects.create(recipient="+41791234567", text="hi")
    Message.objects.filter(pk=m.pk).update(status="sent", provider_id="abc")
    return m

def test_explore(msg, settings):
    client = Client(raise_request_exception=False)
    settings.MITTO_CALLBACK_IP_HEADER = "X-Real-IP"
    for ip in ["fe80::1%eth0", "::ffff:10.0.0.1", "garbage", "1.2.3.4:5678"]:
        r = client.get(URL, {"id": "abc", "status": "buffered"}, HTTP_X_REAL_IP=ip)
        print(ip, r.status_code, r.content[:100], DeliveryReport.objects.order_by("-pk").values_list("remote_addr", flat=True).first())
    r = client.get(URL, {"id": "abc", "status": "x"*33})
    print("long", r.status_code, r.content[:300])
    r = client.get(URL, {"id": "abc", "status": "delivered", "Status": "failed", "STATUS": "x"})
    print("case", r.status_code, r.content[:300], Message.objects.get().status)
    r = client.get(URL, {"status": "delivered"})
    print("noid", r.status_code, r.content[:300])
    r = client.get(URL, {"id": "abc"})
    print("nostatus", r.status_code, r.content[:300])
    r = client.post(URL, data='{"id":"abc","status":{"a":1}}', content_type="application/json")
    print("nested", r.status_code, r.content[:300])
    r = client.post(URL, data='[1]', content_type="application/json")
    print("list", r.status_code, r.content[:300])
    r = client.post(URL, data='"x"', content_type="application/json")
    print("str", r.status_code, r.content[:300])
    r = client.post(URL, data='{"id":"abc","status":"delivered"', content_type="application/json")
    print("badjson", r.status_code, r.content[:300])
    r = client.post(URL, data='{"id":"abc","status":"delivered"}', content_type="text/plain")
    print("textplain", r.status_code, r.content[:300])
    r = client.post(URL, data=b'\xff\xfe', content_type="application/json")
    print("bad utf8", r.status_code, r.content[:300])
    r = client.post(URL, data=b'id=abc&status=\xff', content_type="application/x-www-form-urlencoded")
    print("bad form", r.status_code, r.content[:300])
    r = client.get(URL + "?id=abc&status=%ff%00")
    print("bad query", r.status_code, r.content[:300])
    r = client.get("/mitto/callback/%00/", {"id": "abc", "status": "delivered"})
    print("nul token", r.status_code, r.content[:300])
    r = client.get("/mitto/callback/m1.%ff/", {"id": "abc", "status": "delivered"})
    print("bad token", r.status_code, r.content[:300])
