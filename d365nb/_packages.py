async def aexport_package(*a, **k):
    raise NotImplementedError
async def aimport_package(*a, **k):
    raise NotImplementedError
